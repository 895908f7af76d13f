import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option } from "effect"
import { enqueue } from "../../core/Jobs.ts"
import { publish } from "../../core/Events.ts"
import { CurrentTenant, inTenant } from "../../core/Tenancy.ts"
import { ops } from "../../plugins/ops/index.ts"
import { baseUrl, request, testAppLayer } from "../support/app.ts"
import { testDatabase } from "../support/database.ts"
import { recordTask, testkit, ThingHappened } from "../support/testkit.ts"
import { waitFor } from "../support/wait.ts"

const opsPlugin = ops.make({ retentionDays: 30, pruneSchedule: "17 3 * * *" })

/** A fresh database with the app, HTTP and a worker running on it. */
const withApp = <A, E>(
  body: Effect.Effect<A, E, Layer.Layer.Success<ReturnType<typeof testAppLayer>>>,
  options: { worker?: boolean; http?: boolean } = {}
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const layer = testAppLayer({
        databaseUrl: db.url,
        plugins: [opsPlugin, testkit],
        worker: options.worker ?? true,
        http: options.http ?? false
      })
      return yield* Effect.provide(body, layer)
    })
  )

const runs = (label: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ job_id: string; attempt: number; tenant: string | null }>`
      select job_id::text, attempt, tenant from testkit.runs where label = ${label} order by id`
  )

const deadLetters = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ id: string; task_identifier: string; reason: string; attempts: number; last_error: string }>`
    select id::text, task_identifier, reason, attempts, last_error from core.dead_letters order by id`
)

/** Makes jobs waiting for a retry due now, instead of after graphile-worker's backoff. */
const retryNow = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`update graphile_worker._private_jobs set run_at = now() where attempts > 0 and locked_at is null`
)

describe("jobs", () => {
  it.live("a job enqueued in a rolled-back transaction never runs; a committed one runs once", () =>
    withApp(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql.withTransaction(
          Effect.zipRight(enqueue(recordTask, { label: "rolled-back" }), Effect.fail("abort" as const))
        ).pipe(Effect.flip)
        yield* sql.withTransaction(enqueue(recordTask, { label: "committed" }))
        // The marker is enqueued after both: once it ran, the committed job had its chance too.
        yield* enqueue(recordTask, { label: "marker" })
        yield* waitFor("marker", Effect.map(runs("marker"), (r) => (r.length === 1 ? r : undefined)))
        yield* waitFor("committed", Effect.map(runs("committed"), (r) => (r.length > 0 ? r : undefined)))
        yield* Effect.sleep(300)
        expect(yield* runs("committed")).toHaveLength(1)
        expect(yield* runs("rolled-back")).toHaveLength(0)
        const left = yield* sql<{ n: number }>`select count(*)::int as n from graphile_worker._private_jobs`
        expect(left[0]!.n).toBe(0)
      })
    )
  )

  it.live("tenant work (role trellis_app under row-level security) enqueues and publishes", () =>
    withApp(
      Effect.gen(function* () {
        const orgId = "5b0f6c1e-1d7b-4a59-9a3e-0c2f4c8f6a11"
        yield* inTenant(
          orgId,
          Effect.gen(function* () {
            yield* enqueue(recordTask, { label: "from-tenant" })
            yield* publish(ThingHappened, { n: 7, at: new Date("2026-01-01T00:00:00.000Z") })
          })
        )
        const [run] = yield* waitFor("tenant job", Effect.map(runs("from-tenant"), (r) => (r.length ? r : undefined)))
        expect(run!.tenant).toBe(orgId)
        const sql = yield* SqlClient.SqlClient
        const subscribers = yield* waitFor(
          "subscribers",
          Effect.map(sql<{ label: string; tenant: string }>`select label, tenant from testkit.runs where label like '_:7:%' order by label`, (r) =>
            r.length === 2 ? r : undefined
          )
        )
        expect(subscribers.map((r) => r.tenant)).toEqual([orgId, orgId])
      })
    )
  )

  it.live("the envelope carries the tenant to the handler", () =>
    withApp(
      Effect.gen(function* () {
        yield* enqueue(recordTask, { label: "tenant" }).pipe(Effect.provideService(CurrentTenant, Option.some("org_42")))
        const [run] = yield* waitFor("tenant job", Effect.map(runs("tenant"), (r) => (r.length ? r : undefined)))
        expect(run!.tenant).toBe("org_42")
      })
    )
  )

  it.live("an undecodable payload is dead-lettered at once, without retries", () =>
    withApp(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`select graphile_worker.add_job('testkit.record', '{"data": {"label": 42}}'::json)`
        yield* sql`select graphile_worker.add_job('testkit.record', '{"not": "an envelope"}'::json)`
        const letters = yield* waitFor(
          "two dead letters",
          Effect.map(deadLetters, (d) => (d.length === 2 ? d : undefined))
        )
        expect(letters.map((d) => d.reason)).toEqual(["undecodable", "undecodable"])
        expect(letters.map((d) => d.attempts)).toEqual([1, 1])
        expect(letters[0]!.last_error).toContain("label")
        // The dead letter is written before graphile-worker completes the job (completions
        // are batched): wait for the queue to empty, then make sure nothing is retried.
        yield* waitFor(
          "the dead-lettered jobs leave the queue",
          Effect.map(sql<{ n: number }>`select count(*)::int as n from graphile_worker._private_jobs`, (rows) => (rows[0]!.n === 0 ? true : undefined))
        )
        yield* Effect.sleep("300 millis")
        expect((yield* deadLetters).map((d) => d.attempts)).toEqual([1, 1])
        const left = yield* sql<{ n: number }>`select count(*)::int as n from graphile_worker._private_jobs`
        expect(left[0]!.n).toBe(0)
      })
    )
  )

  it.live("a failing handler is retried, then dead-lettered; retry from the dead-letter table runs it again", () =>
    withApp(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const base = yield* baseUrl
        // Fails 3 times: with maxAttempts 3 that exhausts the job.
        yield* enqueue(recordTask, { label: "flaky", failAttempts: 3 })
        const letters = yield* waitFor(
          "dead letter",
          Effect.zipRight(retryNow, Effect.map(deadLetters, (d) => (d.length === 1 ? d : undefined)))
        )
        expect(letters[0]!.reason).toBe("exhausted")
        expect(letters[0]!.attempts).toBe(3)
        expect(letters[0]!.last_error).toContain("planned failure 3 of flaky")
        expect(yield* runs("flaky")).toHaveLength(0)

        const listed = yield* request(base, "GET", "/api/v1/ops/dead-letters?task=testkit.record")
        expect(listed.status).toBe(200)
        expect(listed.json.items).toHaveLength(1)
        expect(listed.json.items[0].payload.data).toEqual({ label: "flaky", failAttempts: 3 })

        // The retried job starts again at attempt 1, so it fails three more times: make it
        // succeed by retrying a job that only fails on its first attempts.
        const retried = yield* request(base, "POST", `/api/v1/ops/dead-letters/${letters[0]!.id}/retry`)
        expect(retried.status).toBe(200)
        expect(yield* deadLetters).toHaveLength(0)
        const back = yield* waitFor(
          "dead letter again",
          Effect.zipRight(retryNow, Effect.map(deadLetters, (d) => (d.length === 1 ? d : undefined)))
        )
        expect(back[0]!.attempts).toBe(3)

        yield* sql`update core.dead_letters set payload = jsonb_set(payload, '{data,failAttempts}', '1')`
        const again = yield* request(base, "POST", `/api/v1/ops/dead-letters/retry`, { filter: { task: "testkit.record" } })
        expect(again.json).toEqual({ count: 1 })
        const done = yield* waitFor(
          "retried job to succeed",
          Effect.zipRight(retryNow, Effect.map(runs("flaky"), (r) => (r.length ? r : undefined)))
        )
        expect(done[0]!.attempt).toBe(2)
        expect(yield* deadLetters).toHaveLength(0)
      }),
      { http: true }
    )
  )

  it.live("a handler that throws while building its Effect fails the attempt: retried, then dead-lettered with the error", () =>
    withApp(
      Effect.gen(function* () {
        yield* enqueue(recordTask, { label: "bug", throws: true })
        const letters = yield* waitFor(
          "dead letter",
          Effect.zipRight(retryNow, Effect.map(deadLetters, (d) => (d.length === 1 ? d : undefined)))
        )
        expect(letters[0]!.reason).toBe("exhausted")
        expect(letters[0]!.attempts).toBe(3)
        expect(letters[0]!.last_error).toContain("thrown while building bug")
      })
    )
  )

  it.live("a non-retryable failure is dead-lettered on its first attempt; discard removes it", () =>
    withApp(
      Effect.gen(function* () {
        const base = yield* baseUrl
        yield* enqueue(recordTask, { label: "refused", nonRetryable: true })
        const letters = yield* waitFor("dead letter", Effect.map(deadLetters, (d) => (d.length === 1 ? d : undefined)))
        expect(letters[0]!.reason).toBe("non_retryable")
        expect(letters[0]!.attempts).toBe(1)
        const discarded = yield* request(base, "DELETE", `/api/v1/ops/dead-letters/${letters[0]!.id}`)
        expect(discarded.status).toBe(204)
        expect(yield* deadLetters).toHaveLength(0)
        const again = yield* request(base, "DELETE", `/api/v1/ops/dead-letters/${letters[0]!.id}`)
        expect(again.status).toBe(404)
        expect(again.json._tag).toBe("NotFound")
      }),
      { http: true }
    )
  )
})

describe("events", () => {
  it.live("publish fans out to every subscriber in the publishing transaction only", () =>
    withApp(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const at = new Date("2026-01-02T03:04:05.000Z")
        yield* sql.withTransaction(Effect.zipRight(publish(ThingHappened, { n: 1, at }), Effect.fail("abort" as const))).pipe(
          Effect.flip
        )
        const published = yield* sql.withTransaction(publish(ThingHappened, { n: 2, at }))
        expect(published.subscribers).toBe(2)
        const outbox = yield* sql<{ type: string; payload: unknown }>`select type, payload from core.outbox_events`
        expect(outbox).toEqual([{ type: "testkit.thing_happened", payload: { n: 2, at: at.toISOString() } }])
        const labels = yield* waitFor(
          "both subscribers",
          Effect.map(
            sql<{ label: string }>`select label from testkit.runs order by label`,
            (rows) => (rows.length >= 2 ? rows.map((r) => r.label) : undefined)
          )
        )
        yield* Effect.sleep(300)
        expect(labels).toEqual([`a:2:${at.toISOString()}`, `b:2:${at.toISOString()}`])
        expect(yield* sql`select label from testkit.runs`).toHaveLength(2)
      })
    )
  )

  it.live("a payload that does not match the declared Schema is refused at publish", () =>
    withApp(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const error = yield* publish(ThingHappened, { n: 1.5, at: new Date() }).pipe(Effect.flip)
        expect(error._tag).toBe("ParseError")
        expect(yield* sql`select 1 from core.outbox_events`).toHaveLength(0)
      }),
      { worker: false }
    )
  )
})
