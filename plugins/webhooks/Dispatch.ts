import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Chunk, DateTime, Deferred, Duration, Effect, Either, Exit, Option, type ParseResult, Queue, Schema } from "effect"
import { DeliveredEvent, type EventRegistry, publish, type Subscription, type UnknownEventType } from "../../core/Events.ts"
import { countEnqueued as countJobsEnqueued, defineTask, makeEnvelope, type Task } from "../../core/Jobs.ts"
import type { CronItem } from "../../core/Plugin.ts"
import { RateLimiter } from "../../core/RateLimit.ts"
import { CurrentTenant, type NoTenant, withTenant } from "../../core/Tenancy.ts"
import { deliverBatch, type DeliveryError, type DeliveryResult, type Sent } from "./Delivery.ts"
import { MAX_RESPONSE_BYTES, WebhooksSettings } from "./Domain.ts"
import { EndpointDisabled } from "./Events.ts"
import {
  type AttemptRecord,
  type ClaimedMessage,
  type DeliveryEndpoint,
  type EventToFanOut,
  type JobTemplate,
  MessagesRepo
} from "./MessagesRepo.ts"
import { nextAttemptAt } from "./Schedule.ts"
import { signer } from "./Signature.ts"

/**
 * A wake-up of one endpoint: its run sends whatever of its messages is due. Jobs queued
 * before the messages table became the queue named a message; they wake its endpoint.
 */
export const DeliverJob = Schema.Union(Schema.Struct({ endpointId: Schema.String }), Schema.Struct({ messageId: Schema.String }))
export type DeliverJob = typeof DeliverJob.Type

/**
 * Job attempts for infrastructure failures only (the database going away): an HTTP attempt
 * that fails is logged and rescheduled by the run itself, which then completes the job.
 */
export const JOB_MAX_ATTEMPTS = 10

/** Messages a run claims at once: one claim, one HTTP burst and one settling transaction each. */
export const BATCH_SIZE = 100
/** Requests open at once to one endpoint from one run: as many keep-alive sockets, a load most receivers take. */
export const IN_FLIGHT = 16
/** Batches one job sends before handing the rest of a backlog to a fresh job, so other endpoints get their turn. */
export const BATCHES_PER_RUN = 20
/** A message overdue by this much has lost its run (it died holding the lease) or its wake-up: the sweep wakes its endpoint. */
export const SWEEP_GRACE = Duration.minutes(1)

const USER_AGENT = "Trellis-Webhooks/1.0"
const DELIVER_TASK = "webhooks.deliver"

type DispatchError = SqlError | ParseResult.ParseError | NoTenant | UnknownEventType
type DispatchContext = SqlClient.SqlClient | WebhooksSettings | MessagesRepo | RateLimiter | EventRegistry | EndpointRuns

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

/** For statements adding delivery jobs set-based: the jobs carry the current trace and tenant, as `enqueue`'s do. */
export const deliveryJobs = Effect.map(makeEnvelope(null), (envelope): JobTemplate => ({ taskId: DELIVER_TASK, maxAttempts: JOB_MAX_ATTEMPTS, envelope }))

/** Counts delivery jobs a statement added, as `enqueue` counts its own. */
export const countEnqueued = (added: number) => Effect.sync(() => countJobsEnqueued(DELIVER_TASK, added))

interface Claimed {
  readonly endpoint: DeliveryEndpoint
  readonly messages: ReadonlyArray<ClaimedMessage>
  readonly limit: number
}

/**
 * In one tenant transaction: the endpoint, then a lease on up to a batch of its due messages
 * (no more than its rate limit allows in a second). A disabled endpoint's waiting messages
 * fail unsent instead. None when there is nothing to send.
 */
const claimBatch = (endpointId: string) =>
  withTenant(
    Effect.gen(function* () {
      const settings = yield* WebhooksSettings
      const repo = yield* MessagesRepo
      const found = yield* repo.deliveryEndpoint(endpointId)
      // Gone with its messages.
      if (Option.isNone(found)) return Option.none<Claimed>()
      const endpoint = found.value
      if (!endpoint.enabled) {
        yield* repo.abandon(endpointId)
        return Option.none<Claimed>()
      }
      const limit = endpoint.rateLimit === null ? BATCH_SIZE : Math.min(BATCH_SIZE, endpoint.rateLimit)
      // Long enough for the whole batch to time out, IN_FLIGHT requests at a time, with a margin.
      const leaseMs = Duration.toMillis(settings.timeout) * Math.ceil(limit / IN_FLIGHT) + 60_000
      const messages = yield* repo.claim(endpointId, limit, leaseMs)
      return messages.length === 0 ? Option.none<Claimed>() : Option.some({ endpoint, messages, limit })
    })
  )

/**
 * The endpoint's rate limit (messages per second, shared by every worker): the claimed
 * messages within it go now, the rest wait for the next window, spread over it so they do
 * not all return at its first instant.
 */
const applyRateLimit = (endpoint: DeliveryEndpoint, messages: ReadonlyArray<ClaimedMessage>) =>
  Effect.gen(function* () {
    if (endpoint.rateLimit === null) return { allowed: messages, deferred: [] }
    const settings = yield* WebhooksSettings
    const limiter = yield* RateLimiter
    const allowed: Array<ClaimedMessage> = []
    const deferred: Array<{ readonly messageId: string; readonly until: Date }> = []
    let windowEndsAt: number | undefined
    for (const message of messages) {
      if (windowEndsAt === undefined) {
        const decision = yield* limiter.hit(`webhooks:${endpoint.id}`, { limit: endpoint.rateLimit, windowSeconds: 1 })
        if (decision.allowed) {
          allowed.push(message)
          continue
        }
        windowEndsAt = Date.now() + decision.resetSeconds * 1000
      }
      deferred.push({ messageId: message.id, until: new Date(windowEndsAt + Math.floor((settings.random ?? Math.random)() * 1000)) })
    }
    return { allowed, deferred }
  })

/** Signs and sends the messages, each timed out on its own. */
const send = (endpoint: DeliveryEndpoint, messages: ReadonlyArray<ClaimedMessage>) =>
  Effect.gen(function* () {
    const settings = yield* WebhooksSettings
    const signed = signer(endpoint.secrets)
    return yield* deliverBatch(
      endpoint.url,
      messages.map((message) => ({
        body: message.body,
        headers: (sentAtMs: number) => ({
          ...endpoint.headers,
          "user-agent": USER_AGENT,
          ...signed.headers(message.id, Math.floor(sentAtMs / 1000), message.body)
        })
      })),
      {
        allow: settings.allow,
        requireHttps: settings.requireHttps,
        timeoutMs: Duration.toMillis(settings.timeout),
        maxResponseBytes: MAX_RESPONSE_BYTES,
        inFlight: IN_FLIGHT,
        ...(settings.resolve ? { resolve: settings.resolve } : {})
      }
    )
  })

interface Attempted {
  readonly message: ClaimedMessage
  readonly outcome: Outcome
  readonly at: Date
}

/**
 * Settles a batch in one tenant transaction: the endpoint's failure streak (its row lock
 * orders the runs of one endpoint), disabling it on a 410 or after failing for
 * `disableAfter` (publishing `webhooks.endpoint_disabled` once, and failing its waiting
 * messages), every attempt logged and every message moved on in one statement, deferred
 * messages put back, and the endpoint's retry wake-up moved to its next due message.
 * Returns whether a message of the endpoint is due already.
 */
const settle = (endpoint: DeliveryEndpoint, attempted: ReadonlyArray<Attempted>, deferred: ReadonlyArray<{ readonly messageId: string; readonly until: Date }>) =>
  withTenant(
    Effect.gen(function* () {
      const settings = yield* WebhooksSettings
      const repo = yield* MessagesRepo
      if (attempted.length > 0) {
        const times = attempted.map((a) => a.at.getTime())
        const anySucceeded = attempted.some((a) => a.outcome.succeeded)
        const streak = yield* repo.recordStreak(endpoint.id, { anySucceeded, firstAttemptAt: new Date(Math.min(...times)) })
        // Deleted meanwhile, its messages with it.
        if (Option.isNone(streak)) return false
        const { failing_since: failingSince, enabled } = streak.value
        const lastAt = Math.max(...times)
        const failingTooLong = failingSince !== null && lastAt - failingSince.getTime() >= Duration.toMillis(settings.disableAfter)
        const disableFor: "gone" | "failing" | undefined = !enabled
          ? undefined
          : attempted.some((a) => a.outcome.gone)
            ? "gone"
            : failingTooLong
              ? "failing"
              : undefined
        const records = attempted.map(({ message, outcome, at }): AttemptRecord => {
          const next =
            outcome.succeeded || message.manual || disableFor !== undefined || !enabled
              ? Option.none()
              : nextAttemptAt(message.scheduledAttempt, at, {
                  delays: settings.retryDelays,
                  jitter: settings.jitter,
                  maxRetryAfter: settings.maxRetryAfter,
                  ...(settings.random ? { random: settings.random } : {}),
                  ...(outcome.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: outcome.retryAfterSeconds })
                })
          return {
            messageId: message.id,
            manual: message.manual,
            attemptedAt: at,
            statusCode: outcome.statusCode,
            durationMs: outcome.durationMs,
            responseBody: outcome.responseBody,
            error: outcome.error,
            succeeded: outcome.succeeded,
            nextAttemptAt: Option.getOrNull(next)
          }
        })
        yield* repo.recordAttempts(records)
        if (disableFor !== undefined) {
          // Only the run that flips the flag publishes, so the event goes out once.
          const disabled = yield* repo.disableEndpoint(endpoint.id, disableFor)
          if (Option.isSome(disabled)) {
            yield* publish(EndpointDisabled, {
              endpointId: endpoint.id,
              url: disabled.value.url,
              reason: disableFor,
              failingSince: disabled.value.failing_since === null ? null : DateTime.unsafeFromDate(disabled.value.failing_since),
              disabledAt: DateTime.unsafeFromDate(disabled.value.updated_at)
            })
          }
        }
        if (disableFor !== undefined || !enabled) {
          yield* repo.abandon(endpoint.id)
          return false
        }
      }
      if (deferred.length > 0) yield* repo.defer(deferred)
      const next = yield* repo.scheduleNext(endpoint.id, yield* deliveryJobs)
      yield* countEnqueued(next.woken)
      return next.due_now
    })
  )

/** One batch: claim, rate limit, send outside any transaction (a slow receiver holds no connection), settle. */
const deliverOneBatch = (endpointId: string) =>
  Effect.gen(function* () {
    const claimed = yield* claimBatch(endpointId)
    if (Option.isNone(claimed)) return false
    const { endpoint, messages, limit } = claimed.value
    const { allowed, deferred } = yield* applyRateLimit(endpoint, messages)
    const sent: ReadonlyArray<Sent> = allowed.length === 0 ? [] : yield* send(endpoint, allowed)
    const attempted = sent.map(({ startedAt, durationMs, result }, i): Attempted => ({
      message: allowed[i]!,
      outcome: judge(result, durationMs),
      at: new Date(startedAt)
    }))
    const dueNow = yield* settle(endpoint, attempted, deferred)
    // A full batch sent in full: more may be due.
    return dueNow || (messages.length === limit && deferred.length === 0)
  })

interface ActiveRun {
  again: boolean
}

/**
 * The endpoint runs of this process. A wake-up for an endpoint already running here asks
 * that run for one more round instead of taking a second worker slot: the run claims again
 * before it ends, and its claim sees what the wake-up was for (committed before the wake-up
 * was added). Joining and ending are each one synchronous step, so a wake-up cannot slip in
 * between a run's last look and its end.
 */
export class EndpointRuns extends Effect.Service<EndpointRuns>()("webhooks/EndpointRuns", {
  sync: () => {
    const active = new Map<string, ActiveRun>()
    return {
      /** The new run to carry out, or None when the wake-up joined the run already active. */
      join: (endpointId: string) =>
        Effect.sync((): Option.Option<ActiveRun> => {
          const running = active.get(endpointId)
          if (running !== undefined) {
            running.again = true
            return Option.none()
          }
          const run: ActiveRun = { again: false }
          active.set(endpointId, run)
          return Option.some(run)
        }),
      /** Asks the endpoint's run active here, if any, for another round; false when none is. */
      joinIfActive: (endpointId: string) => {
        const running = active.get(endpointId)
        if (running !== undefined) running.again = true
        return running !== undefined
      },
      /** Whether a wake-up joined since the last look (then the run goes on); ends the run otherwise. */
      goOn: (endpointId: string, run: ActiveRun) =>
        Effect.sync(() => {
          if (run.again) {
            run.again = false
            return true
          }
          if (active.get(endpointId) === run) active.delete(endpointId)
          return false
        }),
      /** Ends the run whatever happened (a failure, an interruption): later wake-ups start a new one. */
      end: (endpointId: string, run: ActiveRun) =>
        Effect.sync(() => {
          if (active.get(endpointId) === run) active.delete(endpointId)
        })
    } as const
  }
}) {}

/**
 * A run of one endpoint: batches of its due messages until none is left, then the job
 * completes. A backlog longer than a run goes on in a fresh job, after the jobs queued
 * meanwhile.
 */
const runEndpoint = (endpointId: string): Effect.Effect<void, DispatchError, DispatchContext> =>
  Effect.gen(function* () {
    const runs = yield* EndpointRuns
    const joined = yield* runs.join(endpointId)
    if (Option.isNone(joined)) return
    const run = joined.value
    yield* Effect.gen(function* () {
      for (let batch = 0; batch < BATCHES_PER_RUN; batch++) {
        if (!(yield* deliverOneBatch(endpointId)) && !(yield* runs.goOn(endpointId, run))) return
      }
      // Ended before the wake-up exists, so the wake-up starts a run of its own.
      yield* runs.end(endpointId, run)
      const repo = yield* MessagesRepo
      yield* withTenant(Effect.flatMap(deliveryJobs, (jobs) => repo.wakeUp(endpointId, jobs)))
      yield* countEnqueued(1)
    }).pipe(Effect.ensuring(runs.end(endpointId, run)))
  }).pipe(Effect.withSpan("webhooks.deliver", { attributes: { "webhooks.endpoint": endpointId } }))

export const deliverTask: Task<DeliverJob, typeof DeliverJob.Encoded, DispatchContext> = defineTask({
  id: DELIVER_TASK,
  payload: DeliverJob,
  retry: { maxAttempts: JOB_MAX_ATTEMPTS },
  handler: (job) =>
    "endpointId" in job
      ? runEndpoint(job.endpointId)
      : Effect.flatMap(
          withTenant(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ endpoint_id: string }>`select endpoint_id from webhooks.messages where id = ${job.messageId}`)),
          (rows) => (rows[0] === undefined ? Effect.void : runEndpoint(rows[0].endpoint_id))
        )
})

/**
 * Platform work every minute: wakes the endpoints with messages overdue by `SWEEP_GRACE`,
 * so the claims of a run that died come back once their lease ends.
 */
export const sweepTask = defineTask({
  id: "webhooks.sweep",
  payload: Schema.Struct({}),
  retry: { maxAttempts: 3 },
  handler: () =>
    Effect.gen(function* () {
      const repo = yield* MessagesRepo
      const woken = yield* repo.sweep(Duration.toMillis(SWEEP_GRACE), yield* deliveryJobs)
      yield* countEnqueued(woken)
      if (woken > 0) yield* Effect.logInfo("woke endpoints with overdue webhook messages").pipe(Effect.annotateLogs({ endpoints: woken }))
    })
})

export const sweepCron: CronItem = { id: "webhooks.sweep", schedule: "* * * * *", task: sweepTask, payload: {} }

/** Events written per statement at most. */
const MAX_EVENTS_PER_WRITE = 1_000
/** Fan-out transactions in flight at once: a group gathers while the one before commits. */
const CONCURRENT_WRITES = 4

/** Lets the callbacks already due run first (I/O included, unlike a microtask). */
const afterPendingCallbacks = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

interface PendingEvent {
  readonly orgId: string
  readonly event: EventToFanOut
  readonly written: Deferred.Deferred<void, SqlError>
}

/**
 * Group commit of fan-outs: the fan-out jobs running at once hand their events here and
 * wait; one writer turns all that arrived meanwhile into messages and wake-ups, one
 * statement (its own tenant transaction) per org. A job completes only once its event's
 * messages are committed, so a crash loses nothing (the job runs again, and the messages'
 * unique (endpoint, event) makes that harmless). A failed write is retried event by event,
 * so one bad event fails only its own job.
 */
export class FanOutWriter extends Effect.Service<FanOutWriter>()("webhooks/FanOutWriter", {
  scoped: Effect.gen(function* () {
    const repo = yield* MessagesRepo
    const runs = yield* EndpointRuns
    const sql = yield* SqlClient.SqlClient
    const queue = yield* Effect.acquireRelease(Queue.unbounded<PendingEvent>(), Queue.shutdown)

    // The messages commit first; then a run of the endpoint active in this process is asked
    // for another round, or else a wake-up is added (see `wakeIdle`): both see the messages.
    const write = (orgId: string, events: ReadonlyArray<EventToFanOut>) =>
      Effect.gen(function* () {
        const endpointIds = yield* repo.createMessages(events).pipe(
          Effect.provideService(CurrentTenant, Option.some(orgId)),
          // The tenant is the one just provided.
          Effect.catchTag("NoTenant", Effect.die)
        )
        const idle: Array<string> = []
        for (const endpointId of endpointIds) if (!runs.joinIfActive(endpointId)) idle.push(endpointId)
        if (idle.length === 0) return
        const jobs = yield* Effect.provideService(deliveryJobs, CurrentTenant, Option.some(orgId))
        yield* countEnqueued(yield* repo.wakeIdle(idle, jobs))
      }).pipe(Effect.provideService(SqlClient.SqlClient, sql), Effect.exit)

    const writeOrg = (orgId: string, pending: ReadonlyArray<PendingEvent>) =>
      Effect.gen(function* () {
        const exit = yield* write(orgId, pending.map((p) => p.event))
        if (Exit.isSuccess(exit) || pending.length === 1) {
          return yield* Effect.forEach(pending, (p) => Deferred.done(p.written, exit), { discard: true })
        }
        yield* Effect.forEach(pending, (p) => Effect.flatMap(write(orgId, [p.event]), (own) => Deferred.done(p.written, own)), { discard: true })
      })

    const flush = (batch: Chunk.Chunk<PendingEvent>) => {
      const byOrg = new Map<string, Array<PendingEvent>>()
      for (const pending of batch) {
        const group = byOrg.get(pending.orgId)
        if (group === undefined) byOrg.set(pending.orgId, [pending])
        else group.push(pending)
      }
      return Effect.forEach(byOrg, ([orgId, pending]) => writeOrg(orgId, pending), { concurrency: "unbounded", discard: true })
    }

    // The fan-outs started together arrive a few callbacks apart: wait for them once the
    // first is in, then write while the next group gathers.
    const gather = Effect.zipWith(
      Queue.take(queue),
      Effect.zipRight(afterPendingCallbacks, Queue.takeUpTo(queue, MAX_EVENTS_PER_WRITE - 1)),
      (first, rest) => Chunk.prepend(rest, first)
    )
    const writers = yield* Effect.makeSemaphore(CONCURRENT_WRITES)
    yield* writers.take(1).pipe(
      Effect.zipRight(gather),
      Effect.flatMap((batch) =>
        flush(batch).pipe(
          Effect.catchAllCause((cause) => Effect.logError("webhooks fan-out writer failed", cause)),
          Effect.ensuring(writers.release(1)),
          Effect.forkScoped
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )

    return {
      /** Completes once the event's messages are committed. */
      write: (orgId: string, event: EventToFanOut) =>
        Effect.flatMap(Deferred.make<void, SqlError>(), (written) =>
          Queue.offer(queue, { orgId, event, written }).pipe(Effect.zipRight(Deferred.await(written)))
        )
    } as const
  })
}) {}

/**
 * One message per matching enabled endpoint of the event's org, and a wake-up per endpoint
 * that got one, written with the other fan-outs running at the same time. Events without an
 * org reach nobody: endpoints belong to orgs.
 */
export const fanOutTask = defineTask({
  id: "webhooks.fan_out",
  payload: DeliveredEvent(Schema.Unknown),
  retry: { maxAttempts: JOB_MAX_ATTEMPTS },
  handler: (event) => {
    const orgId = event.orgId
    if (orgId === null) return Effect.void
    const body = JSON.stringify({ type: event.type, timestamp: DateTime.toDateUtc(event.occurredAt).toISOString(), data: event.data })
    return Effect.flatMap(FanOutWriter, (writer) => writer.write(orgId, { id: event.id, type: event.type, body }))
  }
})

/** Every published event, whatever its type. */
export const fanOut: Subscription & { readonly task: typeof fanOutTask } = { pattern: "*", task: fanOutTask }
