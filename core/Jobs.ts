import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, DateTime, Duration, Effect, Option, ParseResult, Schema, Tracer } from "effect"
import { jobsEnqueuedTotal, labelled } from "./Metrics.ts"
import { CurrentTenant } from "./Tenancy.ts"
import { traced } from "./Tracing.ts"

/** What a running job knows about itself. */
export class CurrentJob extends Context.Tag("trellis/CurrentJob")<
  CurrentJob,
  {
    readonly id: string
    readonly taskId: string
    readonly attempt: number
    readonly maxAttempts: number
    /** For cron jobs, the tick this run belongs to. */
    readonly scheduledFor: Option.Option<Date>
  }
>() {}

/** Fail a handler with this to dead-letter the job at once instead of retrying it. */
export class NonRetryable extends Schema.TaggedError<NonRetryable>()("NonRetryable", {
  message: Schema.String
}) {}

export interface RetryPolicy {
  /** Attempts in all, the first included (graphile-worker's default is 25). */
  readonly maxAttempts: number
}

// `any` defaults: plugins keep lists of tasks of different payloads; each task is checked
// where it is defined, and the worker decodes every payload with the task's own Schema.
export interface Task<A = any, I = any, R = any> {
  readonly id: string
  readonly payload: Schema.Schema<A, I, never>
  readonly handler: (payload: A) => Effect.Effect<void, unknown, R>
  readonly retry?: RetryPolicy | undefined
  /** Jobs sharing a queue run one at a time, in order. */
  readonly queue?: string | undefined
  /** A run longer than this fails the attempt. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * A task: an id (prefixed by its plugin's name: `ops.prune`), the Schema its payload is
 * decoded with before the handler runs, and the handler itself.
 */
export const defineTask = <A, I, R>(task: Task<A, I, R>): Task<A, I, R> => task

/** The JSON stored as a graphile-worker payload. */
export const Envelope = Schema.Struct({
  data: Schema.Unknown,
  traceparent: Schema.optional(Schema.String),
  tenant: Schema.optional(Schema.String)
})
export type Envelope = typeof Envelope.Type

export type JobKeyMode = "replace" | "preserve_run_at" | "unsafe_dedupe"

export interface EnqueueOptions {
  readonly runAt?: Date | DateTime.DateTime | undefined
  readonly jobKey?: string | undefined
  readonly jobKeyMode?: JobKeyMode | undefined
  readonly priority?: number | undefined
  readonly queueName?: string | undefined
  readonly maxAttempts?: number | undefined
}

export const traceparentOf = (span: Tracer.AnySpan) =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

export const parseTraceparent = (value: string): Option.Option<Tracer.ExternalSpan> => {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value)
  if (!match) return Option.none()
  return Option.some(
    Tracer.externalSpan({ traceId: match[1]!, spanId: match[2]!, sampled: (parseInt(match[3]!, 16) & 1) === 1 })
  )
}

/** The stored envelope of already-encoded data: it adds the current span and tenant. */
export const makeEnvelope = (data: unknown) =>
  Effect.gen(function* () {
    const span = yield* Effect.option(Effect.currentSpan)
    const tenant = yield* CurrentTenant
    const envelope: Envelope = {
      data,
      ...(Option.isSome(span) ? { traceparent: traceparentOf(span.value) } : {}),
      ...(Option.isSome(tenant) ? { tenant: tenant.value } : {})
    }
    return envelope
  })

const toDate = (value: Date | DateTime.DateTime) => (value instanceof Date ? value : DateTime.toDateUtc(value))

const enqueuedByTask = new Map<string, (n: number) => void>()

/** Counts jobs of `taskId` added to the queue (`jobs_enqueued_total`). */
export const countEnqueued = (taskId: string, added: number) => {
  let count = enqueuedByTask.get(taskId)
  if (count === undefined) {
    count = labelled(jobsEnqueuedTotal, { task: taskId })
    enqueuedByTask.set(taskId, count)
  }
  count(added)
}

export interface JobRef {
  readonly id: string
  readonly taskId: string
}

/**
 * Enqueues a job on the CURRENT SQL connection: inside `sql.withTransaction` the job commits
 * or rolls back with the rest of the transaction.
 */
export const enqueue = <A, I, R>(
  task: Task<A, I, R>,
  payload: A,
  options: EnqueueOptions = {}
): Effect.Effect<JobRef, SqlError | ParseResult.ParseError, SqlClient.SqlClient> =>
  Effect.flatMap(Schema.encode(task.payload)(payload), (data) => enqueueEncoded(task, data, options))

/** Enqueues a job whose payload is already in its encoded (JSON) form. */
export const enqueueEncoded = (
  task: Task,
  data: unknown,
  options: EnqueueOptions = {}
): Effect.Effect<JobRef, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const envelope = yield* makeEnvelope(data)
    const rows = yield* sql<{ id: string }>`
      select (graphile_worker.add_job(
        identifier => ${task.id},
        payload => ${JSON.stringify(envelope)}::json,
        queue_name => ${options.queueName ?? task.queue ?? null},
        run_at => ${options.runAt ? toDate(options.runAt) : null}::timestamptz,
        max_attempts => ${options.maxAttempts ?? task.retry?.maxAttempts ?? null}::smallint,
        job_key => ${options.jobKey ?? null},
        priority => ${options.priority ?? null}::smallint,
        job_key_mode => ${options.jobKeyMode ?? null}
      )).id::text as id`
    countEnqueued(task.id, 1)
    // add_job returns null only under heavy contention on one job_key; the job exists then.
    return { id: rows[0]?.id ?? "", taskId: task.id }
  }).pipe(traced("jobs.enqueue", { attributes: { "job.task": task.id } }))
