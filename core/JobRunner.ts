import { SqlClient } from "@effect/sql"
import { Cause, Context, Duration, Effect, Either, Exit, FiberRef, FiberRefs, Metric, Option, Runtime, Schema } from "effect"
import type { JobHelpers, TaskList } from "graphile-worker"
import { CurrentJob, type Envelope, NonRetryable, parseTraceparent, type Task } from "./Jobs.ts"
import {
  jobDuration,
  jobsCompletedTotal,
  jobsDeadLetteredTotal,
  jobsFailedTotal,
  labelled
} from "./Metrics.ts"
import { CurrentTenant } from "./Tenancy.ts"

type DeadLetterReason = "undecodable" | "exhausted" | "non_retryable"

/**
 * The envelope check, by hand: it runs for every job, and the Schema decoder (kept as the
 * envelope's definition in Jobs.ts) costs about a microsecond more per job here. The
 * messages match what `Schema.decodeUnknownEither(Envelope)` says.
 */
const decodeEnvelope = (raw: unknown): Either.Either<Envelope, string> => {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return Either.left(`expected an object, got ${JSON.stringify(raw) ?? String(raw)}`)
  const envelope = raw as Record<string, unknown>
  if (!("data" in envelope)) return Either.left(`["data"] is missing`)
  const { traceparent, tenant } = envelope
  if (traceparent !== undefined && typeof traceparent !== "string") return Either.left(`["traceparent"]: expected a string`)
  if (tenant !== undefined && typeof tenant !== "string") return Either.left(`["tenant"]: expected a string`)
  return Either.right(envelope as Envelope)
}

const MAX_ERROR_LENGTH = 8_000

const describeCause = (cause: Cause.Cause<unknown>) => {
  const text = Cause.pretty(cause)
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH)}…` : text
}

/** The error graphile-worker records for a failed attempt that will be retried. */
class AttemptFailed extends Error {
  override readonly name = "AttemptFailed"
}

const deadLetter = (helpers: JobHelpers, reason: DeadLetterReason, error: string, tenant: string | undefined) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const job = helpers.job
    const queueName = job.job_queue_id === null ? null : yield* Effect.promise(async () => helpers.getQueueName())
    // A crash between this insert and graphile-worker completing the job makes the job run
    // again later; the unique job_id keeps the dead letter single.
    yield* sql`
      insert into core.dead_letters
        (job_id, task_identifier, queue_name, payload, org_id, reason, attempts, max_attempts, last_error, job_created_at)
      values
        (${job.id}, ${job.task_identifier}, ${queueName}, ${JSON.stringify(job.payload)}::jsonb, ${tenant ?? null},
         ${reason}, ${job.attempts}, ${job.max_attempts}, ${error}, ${job.created_at})
      on conflict (job_id) do nothing`
    yield* Metric.increment(Metric.tagged(jobsDeadLetteredTotal, "task", job.task_identifier))
    yield* Effect.logWarning("job dead-lettered").pipe(
      Effect.annotateLogs({ "job.id": job.id, "job.task": job.task_identifier, reason })
    )
  })

/**
 * Wraps a Trellis task as a graphile-worker task: decodes the envelope and payload (an
 * undecodable one is dead-lettered at once), runs the handler as an Effect on the app's
 * runtime inside a span linked to the enqueuing trace, records metrics, and dead-letters
 * the job when its error is non-retryable or its last attempt fails.
 */
const toGraphileTask = <R>(task: Task<unknown, unknown, R>, runtime: Runtime.Runtime<R | SqlClient.SqlClient>) => {
  const decodePayload = Schema.decodeUnknownEither(task.payload)
  const run = Runtime.runPromiseExit(runtime)
  // Metrics are updated directly with labels fixed once: metric Effects (and tagged metrics)
  // per job cost more than a no-op job.
  const durationByTask = labelled(jobDuration, { task: task.id })
  const completed = labelled(jobsCompletedTotal, { task: task.id })
  const failed = labelled(jobsFailedTotal, { task: task.id })
  const timeout = task.timeout === undefined ? undefined : Duration.decode(task.timeout)
  const tracing = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentTracerEnabled)

  const afterFailure = (exit: Exit.Failure<void, unknown>, helpers: JobHelpers, tenant: string | undefined) =>
    Effect.gen(function* () {
      const job = helpers.job
      const message = describeCause(exit.cause)
      const nonRetryable = Option.exists(Cause.failureOption(exit.cause), (e) => e instanceof NonRetryable)
      if (nonRetryable || job.attempts >= job.max_attempts) {
        return yield* deadLetter(helpers, nonRetryable ? "non_retryable" : "exhausted", message, tenant)
      }
      return yield* Effect.fail(new AttemptFailed(message))
    })

  const settle = async (effect: Effect.Effect<void, unknown, SqlClient.SqlClient>) => {
    const exit = await run(effect)
    if (Exit.isFailure(exit)) {
      const failure = Cause.failureOption(exit.cause)
      throw Option.isSome(failure) ? failure.value : new Error(describeCause(exit.cause))
    }
  }

  const finish = (exit: Exit.Exit<void, unknown>, start: number, helpers: JobHelpers, tenant: string | undefined) => {
    durationByTask((performance.now() - start) / 1000)
    if (Exit.isSuccess(exit)) {
      completed(1)
      return
    }
    failed(1)
    return settle(afterFailure(exit, helpers, tenant))
  }

  // Not async: a handler that completes without suspending (no I/O) is settled without a
  // promise of its own.
  return (raw: unknown, helpers: JobHelpers): Promise<void> | void => {
    const envelope = decodeEnvelope(raw)
    if (Either.isLeft(envelope)) {
      return settle(deadLetter(helpers, "undecodable", `not a Trellis job envelope: ${envelope.left}`, undefined))
    }
    const { data, tenant, traceparent } = envelope.right
    const payload = decodePayload(data)
    if (Either.isLeft(payload)) return settle(deadLetter(helpers, "undecodable", payload.left.message, tenant))
    const job = helpers.job
    const cronTick = (raw as { _cron?: { ts?: string } })._cron?.ts
    // A handler that throws while building its Effect fails the attempt like any other
    // failure (as Effect.suspend would make it, without a suspension per job).
    let handler: Effect.Effect<void, unknown, R>
    try {
      handler = task.handler(payload.right)
    } catch (defect) {
      handler = Effect.die(defect)
    }
    if (timeout) {
      handler = Effect.timeoutFail(handler, {
        duration: timeout,
        onTimeout: () => new Error(`task ${task.id} timed out after ${Duration.format(timeout)}`)
      })
    }
    // Without an exporter the tracer is off and a span is a no-op that still costs a stack
    // capture (always this line: it says nothing about the job) and a context copy.
    if (tracing) {
      const parent = traceparent === undefined ? Option.none() : parseTraceparent(traceparent)
      handler = Effect.withSpan(handler, `job ${task.id}`, {
        kind: "consumer",
        root: Option.isNone(parent),
        ...(Option.isSome(parent) ? { parent: parent.value } : {}),
        attributes: { "job.id": job.id, "job.task": task.id, "job.attempt": job.attempts },
        captureStackTrace: false
      })
    }
    // The job's services go into the context the fiber starts with: each provideService
    // would copy the context, swap it in and compare it with the old one, per job.
    // One copy of the runtime's service map for both (Context.add copies it per call).
    const services = new Map(runtime.context.unsafeMap)
    services.set(CurrentJob.key, {
      id: job.id,
      taskId: task.id,
      attempt: job.attempts,
      maxAttempts: job.max_attempts,
      scheduledFor: cronTick === undefined ? Option.none() : Option.some(new Date(cronTick))
    })
    services.set(CurrentTenant.key, Option.fromNullable(tenant))
    const context = Context.unsafeMake<R | SqlClient.SqlClient>(services)
    const start = performance.now()
    const fiber = Runtime.runFork(Runtime.make({ context, fiberRefs: runtime.fiberRefs, runtimeFlags: runtime.runtimeFlags }))(
      handler as Effect.Effect<void, unknown, R | SqlClient.SqlClient>
    )
    const done = fiber.unsafePoll()
    if (done !== null) return finish(done, start, helpers, tenant)
    return new Promise<void>((resolve, reject) => {
      fiber.addObserver((exit) => {
        const settled = finish(exit, start, helpers, tenant)
        if (settled === undefined) resolve()
        else settled.then(resolve, reject)
      })
    })
  }
}

/** The graphile-worker task list for the given Trellis tasks, run on `runtime`. */
export const makeTaskList = <R>(
  tasks: ReadonlyArray<Task<unknown, unknown, R>>,
  runtime: Runtime.Runtime<R | SqlClient.SqlClient>
): TaskList => Object.fromEntries(tasks.map((task) => [task.id, toGraphileTask(task, runtime)]))
