import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Exit, HashMap, Layer, Logger, LogLevel, Scope } from "effect"
import { enqueue } from "../../core/Jobs.ts"
import { workerLogger } from "../../runtime/Worker.ts"
import { testAppLayer } from "../support/app.ts"
import { testDatabase } from "../support/database.ts"
import { queuedTask, recordTask, testkit } from "../support/testkit.ts"
import { waitFor } from "../support/wait.ts"

const app = (url: string, options: { worker: boolean; cron?: boolean }) =>
  Layer.build(testAppLayer({ databaseUrl: url, plugins: [testkit], ...options }))

const count = (sql: SqlClient.SqlClient, where: string) =>
  Effect.map(sql<{ n: number }>`select count(*)::int as n from testkit.runs where ${sql.literal(where)}`, (r) => r[0]!.n)

/** Pretends the cron items last fired 3 minutes ago, so a starting worker backfills the missed ticks. */
const backdateCron = (sql: SqlClient.SqlClient) =>
  sql`insert into graphile_worker._private_known_crontabs (identifier, known_since, last_execution)
      values ('testkit.tick', now() - interval '10 minutes', date_trunc('minute', now()) - interval '3 minutes')`

describe("worker", () => {
  it.scopedLive("cron items register and fire; two workers fire each tick once and never run a job twice", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      // Migrated, with no worker yet, to prepare the crontab state.
      const setup = yield* app(db.url, { worker: false })
      const sql = SqlClient.SqlClient.pipe(Effect.provide(setup))
      const client = yield* sql
      yield* backdateCron(client)
      yield* Effect.forEach(
        Array.from({ length: 300 }, (_, i) => i),
        (i) => enqueue(recordTask, { label: `job:${i}` }),
        { concurrency: 10, discard: true }
      ).pipe(Effect.provide(setup))

      yield* Effect.all([app(db.url, { worker: true, cron: true }), app(db.url, { worker: true, cron: true })], {
        concurrency: "unbounded"
      })
      yield* waitFor(
        "300 jobs",
        Effect.map(count(client, "label like 'job:%'"), (n) => (n >= 300 ? n : undefined)),
        30_000
      )
      const ticks = yield* waitFor(
        "backfilled ticks",
        Effect.map(
          client<{ scheduled_for: Date }>`select scheduled_for from testkit.runs where label = 'tick:cron' order by 1`,
          (rows) => (rows.length >= 3 ? rows : undefined)
        )
      )
      yield* Effect.sleep(500)
      expect(yield* count(client, "label like 'job:%'")).toBe(300)
      const distinctJobs = yield* client<{ n: number }>`
        select count(distinct label)::int as n from testkit.runs where label like 'job:%'`
      expect(distinctJobs[0]!.n).toBe(300)
      const tickRows = yield* client<{ total: number; distinct: number }>`
        select count(*)::int as total, count(distinct scheduled_for)::int as distinct
          from testkit.runs where label = 'tick:cron'`
      expect(ticks.length).toBeGreaterThanOrEqual(3)
      expect(tickRows[0]!.total).toBe(tickRows[0]!.distinct)
      const registered = yield* client<{ identifier: string }>`
        select identifier from graphile_worker._private_known_crontabs order by 1`
      expect(registered.map((r) => r.identifier)).toContain("testkit.tick")
    })
  )

  it.scopedLive("two jobs of one named queue never overlap with the local queue on", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const context = yield* app(db.url, { worker: true })
      const client = yield* SqlClient.SqlClient.pipe(Effect.provide(context))
      yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => i),
        (i) => enqueue(queuedTask, { label: `serial:${i}`, sleepMs: 30 }),
        { concurrency: 6, discard: true }
      ).pipe(Effect.provide(context))
      const rows = yield* waitFor(
        "12 serial jobs",
        Effect.map(
          client<{ started_at: Date; finished_at: Date }>`
            select started_at, finished_at from testkit.runs where label like 'serial:%' order by started_at`,
          (r) => (r.length === 12 ? r : undefined)
        )
      )
      for (let i = 1; i < rows.length; i++) {
        expect(rows[i]!.started_at.getTime()).toBeGreaterThanOrEqual(rows[i - 1]!.finished_at.getTime())
      }
    })
  )

  it.scopedLive("graceful shutdown lets a running job finish", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const setup = yield* app(db.url, { worker: false })
      const client = yield* SqlClient.SqlClient.pipe(Effect.provide(setup))
      const workerScope = yield* Scope.make()
      yield* Layer.buildWithScope(testAppLayer({ databaseUrl: db.url, plugins: [testkit], worker: true }), workerScope)
      yield* enqueue(recordTask, { label: "slow", sleepMs: 1_500 }).pipe(Effect.provide(setup))
      yield* waitFor(
        "the job to start",
        Effect.map(
          client<{ n: number }>`select count(*)::int as n from graphile_worker._private_jobs where locked_at is not null`,
          (r) => (r[0]!.n === 1 ? true : undefined)
        )
      )
      yield* Scope.close(workerScope, Exit.void)
      // Closing returned only after the job finished and was marked complete.
      expect(yield* count(client, "label = 'slow'")).toBe(1)
      const left = yield* client<{ n: number }>`select count(*)::int as n from graphile_worker._private_jobs`
      expect(left[0]!.n).toBe(0)
    })
  )

  it.effect("graphile-worker's lines reach Effect's logger with their label; debug and info are dropped above Debug", () =>
    Effect.gen(function* () {
      const lines: Array<{ level: string; message: unknown; annotations: Record<string, unknown> }> = []
      const capture = Logger.make(({ logLevel, message, annotations }) => {
        lines.push({ level: logLevel.label, message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
      })
      const runtime = yield* Effect.runtime<never>().pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
        Logger.withMinimumLogLevel(LogLevel.Info)
      )
      const logger = workerLogger(runtime)
      const worker = logger.scope({ label: "worker", workerId: "w1" })
      const job = worker.scope({ label: "job", taskIdentifier: "t", jobId: "7" })
      job.debug("Found task 7 (t)")
      job.info("Completed task 7 (t)")
      job.error("Failed task 7 (t) with error 'boom'")
      worker.error("Failed to release job '7'")
      worker.scope({ jobId: "8" }).warn("still the worker")
      // One logger per label: scoping a job again makes nothing new.
      expect(worker.scope({ label: "job", jobId: "9" })).toBe(job)
      expect(lines).toEqual([
        // A failed attempt is recorded by Trellis itself: a warning, not an error.
        { level: "WARN", message: ["Failed task 7 (t) with error 'boom'"], annotations: { component: "graphile-worker", label: "job" } },
        { level: "ERROR", message: ["Failed to release job '7'"], annotations: { component: "graphile-worker", label: "worker" } },
        { level: "WARN", message: ["still the worker"], annotations: { component: "graphile-worker", label: "worker" } }
      ])
    })
  )
})
