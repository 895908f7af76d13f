import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, DateTime, Duration, Effect, Either, Metric, Option, type ParseResult, Schema } from "effect"
import { DeliveredEvent, type EventRegistry, publish, type Subscription, type UnknownEventType } from "../../core/Events.ts"
import { defineTask, enqueue, makeEnvelope, type Task } from "../../core/Jobs.ts"
import { jobsEnqueuedTotal } from "../../core/Metrics.ts"
import { RateLimiter } from "../../core/RateLimit.ts"
import { type NoTenant, withTenant } from "../../core/Tenancy.ts"
import { deliver, type DeliveryError, type DeliveryResult } from "./Delivery.ts"
import { MAX_RESPONSE_BYTES, WebhooksSettings } from "./Domain.ts"
import { EndpointDisabled } from "./Events.ts"
import { type DeliveryTarget, type JobTemplate, MessagesRepo } from "./MessagesRepo.ts"
import { nextAttemptAt } from "./Schedule.ts"
import { headers as signatureHeaders } from "./Signature.ts"

/** A scheduled attempt carries its number in the schedule; a manual one (resend, recover) stands alone. */
export const DeliverJob = Schema.Union(
  Schema.TaggedStruct("scheduled", { messageId: Schema.String, attempt: Schema.Int.pipe(Schema.positive()) }),
  Schema.TaggedStruct("manual", { messageId: Schema.String })
)
export type DeliverJob = typeof DeliverJob.Type

/**
 * Job attempts for infrastructure failures only (the database going away): an HTTP attempt
 * that fails is logged and rescheduled by the handler itself, which then completes the job.
 */
export const JOB_MAX_ATTEMPTS = 10

const USER_AGENT = "Trellis-Webhooks/1.0"

type DispatchError = SqlError | ParseResult.ParseError | NoTenant | UnknownEventType
type DispatchContext = SqlClient.SqlClient | WebhooksSettings | MessagesRepo | RateLimiter | EventRegistry

interface Outcome {
  readonly succeeded: boolean
  /** 410: the receiver says the endpoint is gone for good. */
  readonly gone: boolean
  readonly statusCode: number | null
  readonly durationMs: number
  readonly responseBody: string | null
  readonly error: string | null
  readonly retryAfterSeconds: number | undefined
}

/** 2xx succeeds; any other status (redirects included), a timeout or a connection error fails. */
const judge = (result: Either.Either<DeliveryResult, DeliveryError>, elapsedMs: number): Outcome =>
  Either.match(result, {
    onLeft: (error) => ({
      succeeded: false,
      gone: false,
      statusCode: null,
      durationMs: Math.round(elapsedMs),
      responseBody: null,
      error: `${error.kind}: ${error.message}`,
      retryAfterSeconds: undefined
    }),
    onRight: (response) => {
      const succeeded = response.status >= 200 && response.status < 300
      return {
        succeeded,
        gone: response.status === 410,
        statusCode: response.status,
        durationMs: Math.round(response.durationMs),
        responseBody: response.responseBody,
        error: succeeded ? null : `HTTP ${response.status}`,
        retryAfterSeconds: response.retryAfterSeconds
      }
    }
  })

/**
 * Logs the attempt and decides what comes next, in the tenant's transaction: a failure
 * extends the endpoint's failure streak and may disable it (410, or failing for
 * `disableAfter`, publishing `webhooks.endpoint_disabled`); a failed scheduled attempt
 * enqueues the next one at its time in the schedule.
 */
const settle = (job: DeliverJob, target: DeliveryTarget, outcome: Outcome, at: Date) =>
  Effect.gen(function* () {
    const settings = yield* WebhooksSettings
    const repo = yield* MessagesRepo
    const attempt = {
      messageId: target.messageId,
      endpointId: target.endpointId,
      scheduledAttempt: job._tag === "scheduled" ? Option.some(job.attempt) : Option.none(),
      attemptedAt: at,
      statusCode: outcome.statusCode,
      durationMs: outcome.durationMs,
      responseBody: outcome.responseBody,
      error: outcome.error,
      succeeded: outcome.succeeded
    }
    if (outcome.succeeded) return yield* repo.recordAttempt({ ...attempt, nextAttemptAt: null })

    const failingSince = yield* repo.recordFailure(target.endpointId, at)
    const failingTooLong = Option.exists(failingSince, (since) => at.getTime() - since.getTime() >= Duration.toMillis(settings.disableAfter))
    const disableFor: "gone" | "failing" | undefined = outcome.gone ? "gone" : failingTooLong ? "failing" : undefined
    if (disableFor !== undefined) {
      // Only the worker that flips the flag publishes, so the event goes out once.
      const disabled = yield* repo.disableEndpoint(target.endpointId, disableFor)
      if (Option.isSome(disabled)) {
        yield* publish(EndpointDisabled, {
          endpointId: target.endpointId,
          url: disabled.value.url,
          reason: disableFor,
          failingSince: disabled.value.failing_since === null ? null : DateTime.unsafeFromDate(disabled.value.failing_since),
          disabledAt: DateTime.unsafeFromDate(disabled.value.updated_at)
        })
      }
    }
    const next =
      job._tag === "scheduled" && disableFor === undefined
        ? nextAttemptAt(job.attempt, at, {
            delays: settings.retryDelays,
            jitter: settings.jitter,
            maxRetryAfter: settings.maxRetryAfter,
            ...(settings.random ? { random: settings.random } : {}),
            ...(outcome.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: outcome.retryAfterSeconds })
          })
        : Option.none()
    yield* repo.recordAttempt({ ...attempt, nextAttemptAt: Option.getOrNull(next) })
    if (job._tag === "scheduled" && Option.isSome(next)) {
      yield* enqueue(deliverTask, { _tag: "scheduled", messageId: target.messageId, attempt: job.attempt + 1 }, { runAt: next.value })
    }
  })

/**
 * One attempt of one message: read it with its endpoint, respect the endpoint's rate limit
 * (over it, the job comes back after the window), sign, send to the SSRF-checked address, and
 * settle. The HTTP request runs outside any transaction, so a slow receiver holds no
 * database connection.
 */
const deliverMessage = (job: DeliverJob): Effect.Effect<void, DispatchError, DispatchContext> =>
  Effect.gen(function* () {
    const settings = yield* WebhooksSettings
    const repo = yield* MessagesRepo
    const found = yield* withTenant(repo.deliveryTarget(job.messageId))
    // Gone with its endpoint.
    if (Option.isNone(found)) return
    const target = found.value
    // A job run again after its attempt was recorded, or overtaken by a success.
    if (job._tag === "scheduled" && (target.status !== "pending" || target.nextScheduledAttempt !== job.attempt)) return
    if (!target.enabled) return yield* withTenant(repo.abandon(target.messageId))
    if (target.rateLimit !== null) {
      const limiter = yield* RateLimiter
      const decision = yield* limiter.hit(`webhooks:${target.endpointId}`, { limit: target.rateLimit, windowSeconds: 1 })
      if (!decision.allowed) {
        const now = yield* Clock.currentTimeMillis
        // Spread over the next window, so the deferred messages do not all return at its first instant.
        const spread = Math.floor((settings.random ?? Math.random)() * 1000)
        yield* withTenant(enqueue(deliverTask, job, { runAt: new Date(now + decision.resetSeconds * 1000 + spread) }))
        return
      }
    }
    const startedAt = yield* Clock.currentTimeMillis
    const result = yield* Effect.either(
      deliver({
        url: target.url,
        body: target.body,
        headers: {
          ...target.headers,
          "user-agent": USER_AGENT,
          ...signatureHeaders({
            msgId: target.messageId,
            timestamp: Math.floor(startedAt / 1000),
            body: target.body,
            secrets: target.secrets
          })
        },
        timeoutMs: Duration.toMillis(settings.timeout),
        allow: settings.allow,
        requireHttps: settings.requireHttps,
        maxResponseBytes: MAX_RESPONSE_BYTES,
        ...(settings.resolve ? { resolve: settings.resolve } : {})
      })
    )
    const elapsed = (yield* Clock.currentTimeMillis) - startedAt
    yield* withTenant(settle(job, target, judge(result, elapsed), new Date(startedAt)))
  }).pipe(Effect.withSpan("webhooks.deliver", { attributes: { "webhooks.message": job.messageId, "webhooks.trigger": job._tag } }))

export const deliverTask: Task<DeliverJob, typeof DeliverJob.Encoded, DispatchContext> = defineTask({
  id: "webhooks.deliver",
  payload: DeliverJob,
  retry: { maxAttempts: JOB_MAX_ATTEMPTS },
  handler: deliverMessage
})

/** For statements adding delivery jobs set-based: the jobs carry the current trace and tenant, as `enqueue`'s do. */
export const deliveryJobs = Effect.map(makeEnvelope(null), (envelope): JobTemplate => ({ taskId: deliverTask.id, maxAttempts: JOB_MAX_ATTEMPTS, envelope }))

/** Counts jobs a statement added, as `enqueue` counts its own. */
export const countEnqueued = (added: number) => Metric.incrementBy(Metric.tagged(jobsEnqueuedTotal, "task", deliverTask.id), added)

/**
 * One message per matching enabled endpoint of the event's org, each with its first delivery
 * job, in one statement. Events without an org reach nobody: endpoints belong to orgs.
 */
export const fanOutTask = defineTask({
  id: "webhooks.fan_out",
  payload: DeliveredEvent(Schema.Unknown),
  retry: { maxAttempts: JOB_MAX_ATTEMPTS },
  handler: (event) =>
    event.orgId === null
      ? Effect.void
      : withTenant(
          Effect.gen(function* () {
            const repo = yield* MessagesRepo
            const body = JSON.stringify({ type: event.type, timestamp: DateTime.formatIso(event.occurredAt), data: event.data })
            const created = yield* repo.createMessages({ id: event.id, type: event.type, body }, yield* deliveryJobs)
            yield* countEnqueued(created)
          })
        )
})

/** Every published event, whatever its type. */
export const fanOut: Subscription & { readonly task: typeof fanOutTask } = { pattern: "*", task: fanOutTask }
