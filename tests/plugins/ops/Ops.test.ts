import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { ops } from "../../../plugins/ops/index.ts"
import { baseUrl, request, testAppLayer } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"
import { recordTask, testkit } from "../../support/testkit.ts"
import { enqueue } from "../../../core/Jobs.ts"

const opsPlugin = ops.make({ retentionDays: 7, pruneSchedule: "17 3 * * *" })
const pruneTask = opsPlugin.tasks.find((t) => t.id === "ops.prune")!

const app = Effect.gen(function* () {
  const db = yield* testDatabase()
  const context = yield* Layer.build(testAppLayer({ databaseUrl: db.url, plugins: [opsPlugin, testkit], http: true }))
  return { context, base: yield* Effect.provide(baseUrl, context), sql: yield* Effect.provide(SqlClient.SqlClient, context) }
})

const insertDeadLetter = (sql: SqlClient.SqlClient, jobId: number, task: string, reason: string, age: string) =>
  sql`insert into core.dead_letters (job_id, task_identifier, payload, reason, attempts, max_attempts, last_error, job_created_at, failed_at)
      values (${jobId}, ${task}, '{"data": {"label": "x"}}', ${reason}, 1, 1, 'boom', now(), now() - ${age}::interval)`

describe("ops plugin", () => {
  it.scopedLive("ops.prune deletes dead letters and outbox events past the retention and records the run", () =>
    Effect.gen(function* () {
      const { context, sql } = yield* app
      yield* insertDeadLetter(sql, 1, "testkit.record", "exhausted", "10 days")
      yield* insertDeadLetter(sql, 2, "testkit.record", "exhausted", "1 day")
      yield* sql`insert into core.outbox_events (type, payload, occurred_at) values
                 ('testkit.thing_happened', '{}', now() - interval '8 days'), ('testkit.thing_happened', '{}', now())`
      yield* pruneTask.handler({}).pipe(Effect.provide(context))
      const left = yield* sql<{ job_id: string }>`select job_id::text from core.dead_letters`
      expect(left.map((r) => r.job_id)).toEqual(["2"])
      const events = yield* sql<{ n: number }>`select count(*)::int as n from core.outbox_events`
      expect(events[0]!.n).toBe(1)
      const runs = yield* sql<{ retention_days: number; dead_letters_deleted: number; outbox_events_deleted: number }>`
        select retention_days, dead_letters_deleted, outbox_events_deleted from ops.prune_runs`
      expect(runs).toEqual([{ retention_days: 7, dead_letters_deleted: 1, outbox_events_deleted: 1 }])
    })
  )

  it.scopedLive("lists dead letters with filters and a cursor, and queue statistics by task", () =>
    Effect.gen(function* () {
      const { base, context, sql } = yield* app
      for (let i = 1; i <= 5; i++) yield* insertDeadLetter(sql, i, "testkit.record", i % 2 ? "exhausted" : "undecodable", "1 hour")
      yield* insertDeadLetter(sql, 6, "testkit.queued", "non_retryable", "1 hour")
      const first = yield* request(base, "GET", "/api/v1/ops/dead-letters?task=testkit.record&limit=2")
      expect(first.json.items.map((d: { jobId: string }) => d.jobId)).toEqual(["5", "4"])
      const second = yield* request(base, "GET", `/api/v1/ops/dead-letters?task=testkit.record&limit=2&cursor=${first.json.nextCursor}`)
      expect(second.json.items.map((d: { jobId: string }) => d.jobId)).toEqual(["3", "2"])
      const third = yield* request(base, "GET", `/api/v1/ops/dead-letters?task=testkit.record&limit=2&cursor=${second.json.nextCursor}`)
      expect(third.json.items.map((d: { jobId: string }) => d.jobId)).toEqual(["1"])
      expect(third.json.nextCursor).toBeNull()
      const byReason = yield* request(base, "GET", "/api/v1/ops/dead-letters?reason=undecodable")
      expect(byReason.json.items.map((d: { jobId: string }) => d.jobId)).toEqual(["4", "2"])
      const badReason = yield* request(base, "GET", "/api/v1/ops/dead-letters?reason=nope")
      expect(badReason.status).toBe(400)

      yield* enqueue(recordTask, { label: "waiting" }).pipe(Effect.provide(context))
      const queues = yield* request(base, "GET", "/api/v1/ops/queues")
      const record = queues.json.find((q: { task: string }) => q.task === "testkit.record")
      expect(record).toMatchObject({ pending: 1, running: 0, deadLetters: 5 })
      const queued = queues.json.find((q: { task: string }) => q.task === "testkit.queued")
      expect(queued).toMatchObject({ pending: 0, deadLetters: 1 })

      const discarded = yield* request(base, "POST", "/api/v1/ops/dead-letters/discard", { filter: { reason: "exhausted" } })
      expect(discarded.json).toEqual({ count: 3 })
      const registrations = yield* request(base, "GET", "/api/v1/ops/tasks")
      expect(registrations.json.cron).toContainEqual({ id: "ops.prune", plugin: "ops", schedule: "17 3 * * *", task: "ops.prune" })
      expect(registrations.json.tasks.map((t: { id: string }) => t.id)).toContain("testkit.queued")
    })
  )
})
