import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { fileURLToPath } from "node:url"
import { defineEvent, defineSubscriber } from "../../core/Events.ts"
import { CurrentJob, defineTask, NonRetryable } from "../../core/Jobs.ts"
import { definePlugin } from "../../core/Plugin.ts"
import { CurrentTenant } from "../../core/Tenancy.ts"

/** Records one run of a job into testkit.runs (what tests assert on). */
const record = (label: string, startedAt: Date) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const job = yield* CurrentJob
    const tenant = yield* CurrentTenant
    yield* sql`
      insert into testkit.runs (label, job_id, task, attempt, tenant, scheduled_for, started_at)
      values (${label}, ${job.id}, ${job.taskId}, ${job.attempt}, ${Option.getOrNull(tenant)},
              ${Option.getOrNull(job.scheduledFor)}, ${startedAt})`
  })

export const RecordPayload = Schema.Struct({
  label: Schema.String,
  sleepMs: Schema.optional(Schema.Int),
  /** Fail this many first attempts. */
  failAttempts: Schema.optional(Schema.Int),
  nonRetryable: Schema.optional(Schema.Boolean),
  /** Throw while building the handler's Effect (a bug outside any Effect). */
  throws: Schema.optional(Schema.Boolean)
})

export const recordTask = defineTask({
  id: "testkit.record",
  payload: RecordPayload,
  retry: { maxAttempts: 3 },
  handler: (payload) => {
    if (payload.throws) throw new Error(`thrown while building ${payload.label}`)
    return Effect.gen(function* () {
      const startedAt = new Date()
      const job = yield* CurrentJob
      if (payload.nonRetryable) return yield* new NonRetryable({ message: `refusing ${payload.label}` })
      if (payload.sleepMs) yield* Effect.sleep(payload.sleepMs)
      if (payload.failAttempts !== undefined && job.attempt <= payload.failAttempts) {
        return yield* Effect.fail(new Error(`planned failure ${job.attempt} of ${payload.label}`))
      }
      yield* record(payload.label, startedAt)
    })
  }
})

/** Same task, serialised on one named queue. */
export const queuedTask = defineTask({
  id: "testkit.queued",
  payload: RecordPayload,
  queue: "testkit-serial",
  handler: (payload) =>
    Effect.gen(function* () {
      const startedAt = new Date()
      if (payload.sleepMs) yield* Effect.sleep(payload.sleepMs)
      yield* record(payload.label, startedAt)
    })
})

export const tickTask = defineTask({
  id: "testkit.tick",
  payload: Schema.Struct({ note: Schema.String }),
  handler: (payload) => record(`tick:${payload.note}`, new Date())
})

export const ThingHappened = defineEvent("testkit.thing_happened", Schema.Struct({ n: Schema.Int, at: Schema.DateFromString }))

const subscriber = (suffix: string) =>
  defineSubscriber({
    id: `testkit.on_thing_${suffix}`,
    event: ThingHappened,
    handler: (event) => record(`${suffix}:${event.data.n}:${event.data.at.toISOString()}`, new Date())
  })

export const testkit = definePlugin({
  name: "testkit",
  description: "Tasks, events and cron items for the platform's own tests",
  tasks: [recordTask, queuedTask, tickTask],
  cron: [{ id: "testkit.tick", schedule: "* * * * *", task: tickTask, payload: { note: "cron" }, backfill: "10 minutes" }],
  events: { publishes: [ThingHappened], subscribes: [subscriber("a"), subscriber("b")] },
  migrations: { dir: fileURLToPath(new URL("./sql/testkit/", import.meta.url)) }
})
