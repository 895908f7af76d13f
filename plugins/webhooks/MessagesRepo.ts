import { SqlClient } from "@effect/sql"
import type { Fragment } from "@effect/sql/Statement"
import { DateTime, Effect, Option } from "effect"
import { tenantStatement } from "../../core/Tenancy.ts"
import type { Attempt, ListMessagesParams, Message, MessageStatus, PageParams } from "./Domain.ts"

/** Every query here runs for a tenant (its transaction, or `tenantStatement`): row-level security scopes it to the org. */

interface MessageRow {
  id: string
  seq: string
  endpoint_id: string
  event_id: string
  event_type: string
  status: MessageStatus
  attempts: number
  next_attempt_at: Date | null
  last_attempt_at: Date | null
  created_at: Date
}

const messageColumns = `id, seq::text, endpoint_id, event_id::text, event_type, status, attempts, next_attempt_at,
  last_attempt_at, created_at`

const utcOrNull = (date: Date | null) => (date === null ? null : DateTime.unsafeFromDate(date))

const toMessage = (row: MessageRow): Message => ({
  id: row.id,
  endpointId: row.endpoint_id,
  eventId: row.event_id,
  eventType: row.event_type,
  status: row.status,
  attempts: row.attempts,
  nextAttemptAt: utcOrNull(row.next_attempt_at),
  lastAttemptAt: utcOrNull(row.last_attempt_at),
  createdAt: DateTime.unsafeFromDate(row.created_at)
})

interface AttemptRow {
  id: string
  message_id: string
  trigger: Attempt["trigger"]
  attempted_at: Date
  status_code: number | null
  duration_ms: number
  response_body: string | null
  error: string | null
  succeeded: boolean
}

const toAttempt = (row: AttemptRow): Attempt => ({
  id: row.id,
  messageId: row.message_id,
  trigger: row.trigger,
  attemptedAt: DateTime.unsafeFromDate(row.attempted_at),
  statusCode: row.status_code,
  durationMs: row.duration_ms,
  responseBody: row.response_body,
  error: row.error,
  succeeded: row.succeeded
})

/** What a delivery run needs of the endpoint it sends to. */
export interface DeliveryEndpoint {
  readonly id: string
  readonly url: string
  readonly enabled: boolean
  readonly headers: Readonly<Record<string, string>>
  readonly rateLimit: number | null
  /** The current secret, then the previous one while it still signs. */
  readonly secrets: ReadonlyArray<string>
}

/** A message a run has leased: its to send until the lease ends. */
export interface ClaimedMessage {
  readonly id: string
  readonly body: string
  /** The schedule's number for this attempt; unused by a manual attempt. */
  readonly scheduledAttempt: number
  readonly manual: boolean
}

/** The outcome of one claimed message's attempt, as the run settles it. */
export interface AttemptRecord {
  readonly messageId: string
  readonly manual: boolean
  readonly attemptedAt: Date
  readonly statusCode: number | null
  readonly durationMs: number
  readonly responseBody: string | null
  readonly error: string | null
  readonly succeeded: boolean
  /** For a failed scheduled attempt: when the next one runs; null when there is none. */
  readonly nextAttemptAt: Date | null
}

/** A new event to fan out to the org's matching endpoints. */
export interface EventToFanOut {
  readonly id: string
  readonly type: string
  /** The exact bytes every delivery of it sends. */
  readonly body: string
}

/**
 * What a statement needs to add delivery jobs itself, set-based: core's job envelope (trace
 * and tenant) with its data left to fill per row.
 */
export interface JobTemplate {
  readonly taskId: string
  readonly maxAttempts: number
  readonly envelope: unknown
}

/**
 * Job keys of an endpoint's wake-ups. `due` wakes it for work due now (new, resent, recovered
 * messages; the rest of a backlog): a pending one absorbs the others and keeps its (earliest)
 * time. `retry` wakes it at its next scheduled retry, and is moved by every run that ends.
 * Apart, so moving the retry wake-up later never delays work due now.
 */
/**
 * Wake-ups run before jobs of the default priority (0) queued earlier, fan-outs included: the
 * messages already written go out before more are made, which keeps the backlog (and the
 * delay of each delivery) short.
 */
const WAKE_UP_PRIORITY = -10

export const dueKey = (endpointId: string) => `webhooks.deliver:${endpointId}`
export const retryKey = (endpointId: string) => `webhooks.retry:${endpointId}`

export class MessagesRepo extends Effect.Service<MessagesRepo>()("webhooks/MessagesRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /**
     * graphile_worker.add_jobs with one wake-up per endpoint of `endpoints` (a relation with
     * `id`, sorted so concurrent writers lock the job keys in one order), keyed by `key`
     * (`dueKey`/`retryKey`), each at `runAt` (an expression over the relation; now if null).
     */
    const wakeUps = (endpoints: Fragment, key: "due" | "retry", runAt: Fragment, jobs: JobTemplate) =>
      sql`graphile_worker.add_jobs(array(
            select row(${jobs.taskId}::text,
                       jsonb_set(${JSON.stringify(jobs.envelope)}::jsonb, '{data}', jsonb_build_object('endpointId', w.id))::json,
                       null, ${runAt}, ${jobs.maxAttempts}::smallint,
                       ${key === "due" ? "webhooks.deliver:" : "webhooks.retry:"} || w.id, ${WAKE_UP_PRIORITY}::smallint, null)::graphile_worker.job_spec
              from ${endpoints} as w order by w.id),
            job_key_preserve_run_at => ${key === "due"})`

    /**
     * One message per enabled endpoint of the org whose filter matches, for every event of
     * the batch (none twice per event and endpoint), each due now: one statement however
     * many events and endpoints, sent with the current tenant's settings in one round trip
     * (`tenantStatement`: a single statement is its own transaction). Returns the matching
     * endpoints, those whose messages existed already (a fan-out run again) included, for
     * `wakeIdle`.
     *
     * Its commit does not wait for the WAL flush (`synchronous_commit` off): the fan-out job
     * completes in a later, synchronous commit, and WAL is flushed in order, so that makes
     * this one durable too; until then a crash only means the job runs again. A claim of
     * these messages commits synchronously as well, so none is sent before it is durable.
     * (The statement carries no comment: `tenantStatement` inlines only plain statements.)
     */
    const createMessages = (events: ReadonlyArray<EventToFanOut>) =>
      tenantStatement(sql<{ endpoint_id: string }>`
        with event as (
          select * from unnest(${events.map((e) => e.id)}::uuid[], ${events.map((e) => e.type)}::text[],
                               ${events.map((e) => e.body)}::text[]) as event(id, type, body)
        ), matched as (
          select e.org_id, e.id as endpoint_id, event.id as event_id, event.type, event.body
            from event join webhooks.endpoints e
              on e.enabled
             and (e.event_types is null or exists (
                   select 1 from unnest(e.event_types) as p
                    where p = '*' or p = event.type
                       or (right(p, 2) = '.*' and starts_with(event.type, left(p, -1)))))
        ), created as (
          insert into webhooks.messages (org_id, endpoint_id, event_id, event_type, body, due_at)
          select org_id, endpoint_id, event_id, type, body, now() from matched
          on conflict (endpoint_id, event_id) do nothing
        ), async_commit as (
          select set_config('synchronous_commit', 'off', true)
        )
        select distinct endpoint_id from matched, async_commit`).pipe(
        Effect.map((rows) => rows.map((row) => row.endpoint_id)),
        Effect.withSpan("MessagesRepo.createMessages", { attributes: { "webhooks.events": events.length } })
      )

    /**
     * A `due` wake-up for each of the endpoints that has no pending one due already; run after
     * the messages it is for have committed. A pending wake-up is then sure to see them (it
     * has not started yet), and a running one either sees them or gets a new wake-up here,
     * so nothing waits for the sweep, and concurrent fan-outs (which mostly find a pending
     * wake-up) do not queue on the lock of its row. Returns the wake-ups added.
     */
    const wakeIdle = (endpointIds: ReadonlyArray<string>, jobs: JobTemplate) =>
      sql<{ n: number }>`
        with idle as (
          select w.id from unnest(${endpointIds}::text[]) as w(id)
           where not exists (select 1 from graphile_worker.jobs j
                              where j.key = 'webhooks.deliver:' || w.id and j.locked_at is null and j.run_at <= now())
        )
        select (select count(*) from ${wakeUps(sql`idle`, "due", sql`null`, jobs)})::int as n
         where exists (select 1 from idle)`.pipe(
        Effect.map((rows) => rows[0]?.n ?? 0),
        Effect.withSpan("MessagesRepo.wakeIdle")
      )

    const list = (params: ListMessagesParams) =>
      Effect.gen(function* () {
        const conditions = [
          ...(params.endpointId === undefined ? [] : [sql`endpoint_id = ${params.endpointId}`]),
          ...(params.eventType === undefined ? [] : [sql`event_type = ${params.eventType}`]),
          ...(params.status === undefined ? [] : [sql`status = ${params.status}`]),
          ...(params.since === undefined ? [] : [sql`created_at >= ${DateTime.toDateUtc(params.since)}`]),
          ...(params.cursor === undefined ? [] : [sql`seq < ${params.cursor}`])
        ]
        const rows = yield* sql<MessageRow>`
          select ${sql.literal(messageColumns)} from webhooks.messages
           where ${sql.and(conditions)}
           order by seq desc
           limit ${params.limit + 1}`
        const items = rows.slice(0, params.limit)
        return { items: items.map(toMessage), nextCursor: rows.length > params.limit ? items[items.length - 1]!.seq : null }
      }).pipe(Effect.withSpan("MessagesRepo.list"))

    const get = (id: string) =>
      sql<MessageRow & { body: string }>`
        select ${sql.literal(messageColumns)}, body from webhooks.messages where id = ${id}`.pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (row) => ({ ...toMessage(row), payload: JSON.parse(row.body) as unknown }))
        ),
        Effect.withSpan("MessagesRepo.get")
      )

    const attempts = (messageId: string, params: PageParams) =>
      Effect.gen(function* () {
        const rows = yield* sql<AttemptRow>`
          select id::text, message_id, trigger, attempted_at, status_code, duration_ms, response_body, error, succeeded
            from webhooks.attempts
           where message_id = ${messageId} and ${params.cursor === undefined ? sql`true` : sql`id < ${params.cursor}`}
           order by id desc
           limit ${params.limit + 1}`
        const items = rows.slice(0, params.limit)
        return { items: items.map(toAttempt), nextCursor: rows.length > params.limit ? items[items.length - 1]!.id : null }
      }).pipe(Effect.withSpan("MessagesRepo.attempts"))

    const deliveryEndpoint = (endpointId: string) =>
      sql<{
        id: string
        url: string
        enabled: boolean
        headers: Record<string, string>
        rate_limit: number | null
        secret: string
        previous_secret: string | null
      }>`
        select id, url, enabled, headers, rate_limit, secret,
               case when previous_secret_expires_at > now() then previous_secret end as previous_secret
          from webhooks.endpoints where id = ${endpointId}`.pipe(
        Effect.map((rows) =>
          Option.map(
            Option.fromNullable(rows[0]),
            (row): DeliveryEndpoint => ({
              id: row.id,
              url: row.url,
              enabled: row.enabled,
              headers: row.headers,
              rateLimit: row.rate_limit,
              secrets: row.previous_secret === null ? [row.secret] : [row.secret, row.previous_secret]
            })
          )
        ),
        Effect.withSpan("MessagesRepo.deliveryEndpoint")
      )

    /**
     * Leases up to `limit` of the endpoint's due messages, oldest due first, until `leaseMs`
     * from now: concurrent runs skip each other's rows, and the messages of a run that dies
     * fall due again when the lease ends.
     */
    const claim = (endpointId: string, limit: number, leaseMs: number) =>
      sql<{ id: string; body: string; next_scheduled_attempt: number; manual_attempt: boolean }>`
        update webhooks.messages m set due_at = now() + make_interval(secs => ${leaseMs / 1000})
          from (select id from webhooks.messages
                 where endpoint_id = ${endpointId} and due_at <= now()
                 order by due_at
                 limit ${limit}
                   for update skip locked) as due
         where m.id = due.id
        returning m.id, m.body, m.next_scheduled_attempt, m.manual_attempt`.pipe(
        Effect.map((rows) =>
          rows.map(
            (row): ClaimedMessage => ({
              id: row.id,
              body: row.body,
              scheduledAttempt: row.next_scheduled_attempt,
              manual: row.manual_attempt
            })
          )
        ),
        Effect.withSpan("MessagesRepo.claim", { attributes: { "webhooks.endpoint": endpointId } })
      )

    /**
     * Starts, continues or (after a success) ends the endpoint's failure streak, locking its
     * row so runs of one endpoint settle one after another; returns the streak's start and
     * whether the endpoint is still enabled.
     */
    const recordStreak = (endpointId: string, outcome: { readonly anySucceeded: boolean; readonly firstAttemptAt: Date }) =>
      sql<{ failing_since: Date | null; enabled: boolean }>`
        update webhooks.endpoints
           set failing_since = case when ${outcome.anySucceeded}::boolean then null else coalesce(failing_since, ${outcome.firstAttemptAt}) end
         where id = ${endpointId}
         returning failing_since, enabled`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.withSpan("MessagesRepo.recordStreak")
      )

    /**
     * Logs every attempt of a batch and moves each message on, in one statement. A success
     * delivers; a failed scheduled attempt waits for its next time or fails for good; a failed
     * manual attempt leaves the scheduled retry in place. A resend asked for while the
     * message was in flight stays due.
     */
    const recordAttempts = (records: ReadonlyArray<AttemptRecord>) =>
      sql`
        with attempt as (
          select * from unnest(${records.map((r) => r.messageId)}::text[], ${records.map((r) => r.manual)}::boolean[],
                               ${records.map((r) => r.attemptedAt.toISOString())}::timestamptz[],
                               ${records.map((r) => r.statusCode)}::integer[], ${records.map((r) => r.durationMs)}::integer[],
                               ${records.map((r) => r.responseBody)}::text[], ${records.map((r) => r.error)}::text[],
                               ${records.map((r) => r.succeeded)}::boolean[],
                               ${records.map((r) => r.nextAttemptAt?.toISOString() ?? null)}::timestamptz[])
                 as a(message_id, manual, attempted_at, status_code, duration_ms, response_body, error, succeeded, next_attempt_at)
        ), logged as (
          insert into webhooks.attempts
            (org_id, message_id, trigger, attempted_at, status_code, duration_ms, response_body, error, succeeded)
          select core.current_org_id(), a.message_id, case when a.manual then 'manual' else 'scheduled' end, a.attempted_at,
                 a.status_code, a.duration_ms, a.response_body, a.error, a.succeeded
            from attempt a
            -- Its message deleted with its endpoint meanwhile: nothing to log it against.
            join webhooks.messages m on m.id = a.message_id
        )
        update webhooks.messages m set
          status = case
            when a.succeeded then 'delivered'
            when not a.manual then case when a.next_attempt_at is null then 'failed' else 'pending' end
            when m.next_attempt_at is not null then 'pending'
            else 'failed' end,
          next_attempt_at = case
            when a.succeeded then null
            when not a.manual then a.next_attempt_at
            else m.next_attempt_at end,
          next_scheduled_attempt = m.next_scheduled_attempt + case when a.manual then 0 else 1 end,
          manual_attempt = m.manual_attempt and not a.manual,
          due_at = case
            when m.manual_attempt and not a.manual then now()
            when a.succeeded then null
            when not a.manual then a.next_attempt_at
            else m.next_attempt_at end,
          attempts = m.attempts + 1,
          last_attempt_at = a.attempted_at
          from attempt a
         where m.id = a.message_id`.pipe(Effect.asVoid, Effect.withSpan("MessagesRepo.recordAttempts", { attributes: { "webhooks.attempts": records.length } }))

    /** Messages the endpoint's rate limit held back: due again at their time, no attempt made. */
    const defer = (deferred: ReadonlyArray<{ readonly messageId: string; readonly until: Date }>) =>
      sql`
        update webhooks.messages m set due_at = d.until
          from unnest(${deferred.map((d) => d.messageId)}::text[], ${deferred.map((d) => d.until.toISOString())}::timestamptz[])
               as d(id, until)
         where m.id = d.id`.pipe(Effect.asVoid, Effect.withSpan("MessagesRepo.defer"))

    /**
     * The endpoint's next due message after a run's batch (leased ones included: due when
     * their lease ends). Due later: the endpoint's `retry` wake-up moves to then. Due already
     * (a retry whose wait passed while the batch was out, a message fanned out meanwhile): the
     * run goes on, so returns true.
     */
    const scheduleNext = (endpointId: string, jobs: JobTemplate) =>
      sql<{ due_now: boolean; woken: number }>`
        with next as (
          select ${endpointId}::text as id, min(due_at) as run_at
            from webhooks.messages where endpoint_id = ${endpointId} and due_at is not null
        ), later as (
          select * from next where run_at > clock_timestamp()
        )
        select coalesce((select run_at <= clock_timestamp() from next), false) as due_now,
               (select count(*) from ${wakeUps(sql`later`, "retry", sql`w.run_at`, jobs)})::int as woken`.pipe(
        Effect.map((rows) => rows[0] ?? { due_now: false, woken: 0 }),
        Effect.withSpan("MessagesRepo.scheduleNext")
      )

    /** A `due` wake-up for the endpoint: there is work to send now. */
    const wakeUp = (endpointId: string, jobs: JobTemplate) =>
      sql`select 1 from ${wakeUps(sql`(select ${endpointId}::text as id)`, "due", sql`null`, jobs)}`.pipe(
        Effect.asVoid,
        Effect.withSpan("MessagesRepo.wakeUp")
      )

    /** Disables an enabled endpoint; None when it was not (another worker got there first). */
    const disableEndpoint = (endpointId: string, reason: "gone" | "failing") =>
      sql<{ url: string; failing_since: Date | null; updated_at: Date }>`
        update webhooks.endpoints set enabled = false, disabled_reason = ${reason}, updated_at = now()
         where id = ${endpointId} and enabled
         returning url, failing_since, updated_at`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.withSpan("MessagesRepo.disableEndpoint")
      )

    /**
     * The waiting messages of a disabled endpoint fail unsent, their retries with them; the
     * ones in flight (`except`) are settled by their run.
     */
    const abandon = (endpointId: string, except: ReadonlyArray<string> = []) =>
      sql`
        update webhooks.messages set status = 'failed', next_attempt_at = null, due_at = null, manual_attempt = false
         where endpoint_id = ${endpointId} and due_at is not null and id <> all(${except}::text[])`.pipe(
        Effect.asVoid,
        Effect.withSpan("MessagesRepo.abandon")
      )

    /**
     * Shown as pending until the manual attempt settles it; due now, with a wake-up for its
     * endpoint. None when the message does not exist.
     */
    const markForResend = (messageId: string, jobs: JobTemplate) =>
      sql<{ endpoint_id: string | null }>`
        with marked as (
          update webhooks.messages set status = 'pending', manual_attempt = true, due_at = now()
           where id = ${messageId}
          returning endpoint_id as id
        )
        select (select id from marked) as endpoint_id, (select count(*) from ${wakeUps(sql`marked`, "due", sql`null`, jobs)}) as woken`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.endpoint_id)),
        Effect.withSpan("MessagesRepo.markForResend")
      )

    /** Marks the endpoint's failed messages of the period pending and due for a manual attempt, with one wake-up. */
    const recover = (
      period: { readonly endpointId: string; readonly since: Date; readonly until: Date | null },
      jobs: JobTemplate
    ) =>
      sql<{ count: number }>`
        with chosen as (
          update webhooks.messages set status = 'pending', manual_attempt = true, due_at = now()
           where endpoint_id = ${period.endpointId} and status = 'failed'
             and created_at >= ${period.since} and (${period.until}::timestamptz is null or created_at < ${period.until})
          returning endpoint_id
        ), woken as (
          select distinct endpoint_id as id from chosen
        )
        select (select count(*) from chosen)::int as count, (select count(*) from ${wakeUps(sql`woken`, "due", sql`null`, jobs)}) as woken`.pipe(
        Effect.map((rows) => rows[0]?.count ?? 0),
        Effect.withSpan("MessagesRepo.recover")
      )

    /**
     * Platform work over every org: a `due` wake-up for each endpoint with a message overdue
     * by more than `graceMs` (a run died holding its lease, or its wake-up was lost), carrying
     * the endpoint's org as the job's tenant.
     */
    const sweep = (graceMs: number, jobs: JobTemplate) =>
      sql<{ n: number }>`
        select count(*)::int as n from graphile_worker.add_jobs(array(
          select row(${jobs.taskId}::text,
                     json_build_object('data', json_build_object('endpointId', o.endpoint_id), 'tenant', o.org_id),
                     null, null, ${jobs.maxAttempts}::smallint, 'webhooks.deliver:' || o.endpoint_id, ${WAKE_UP_PRIORITY}::smallint, null)::graphile_worker.job_spec
            from (select distinct endpoint_id, org_id from webhooks.messages
                   where due_at < now() - make_interval(secs => ${graceMs / 1000})) as o
           order by o.endpoint_id),
          job_key_preserve_run_at => true)`.pipe(
        Effect.map((rows) => rows[0]?.n ?? 0),
        Effect.withSpan("MessagesRepo.sweep")
      )

    return {
      createMessages,
      wakeIdle,
      list,
      get,
      attempts,
      deliveryEndpoint,
      claim,
      recordStreak,
      recordAttempts,
      defer,
      scheduleNext,
      wakeUp,
      disableEndpoint,
      abandon,
      markForResend,
      recover,
      sweep
    } as const
  })
}) {}
