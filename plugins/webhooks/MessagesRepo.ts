import { SqlClient } from "@effect/sql"
import type { Fragment } from "@effect/sql/Statement"
import { DateTime, Effect, Option } from "effect"
import type { Attempt, ListMessagesParams, Message, MessageStatus, PageParams } from "./Domain.ts"

/** Every query here runs in a tenant transaction: row-level security scopes it to the org. */

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

/** A message with what sending it needs from its endpoint. */
export interface DeliveryTarget {
  readonly messageId: string
  readonly endpointId: string
  readonly body: string
  readonly status: MessageStatus
  readonly nextScheduledAttempt: number
  readonly url: string
  readonly enabled: boolean
  readonly headers: Readonly<Record<string, string>>
  readonly rateLimit: number | null
  /** The current secret, then the previous one while it still signs. */
  readonly secrets: ReadonlyArray<string>
}

export interface AttemptRecord {
  readonly messageId: string
  readonly endpointId: string
  /** The schedule's attempt number; None for a manual attempt. */
  readonly scheduledAttempt: Option.Option<number>
  readonly attemptedAt: Date
  readonly statusCode: number | null
  readonly durationMs: number
  readonly responseBody: string | null
  readonly error: string | null
  readonly succeeded: boolean
  /** For a failed scheduled attempt: when the next one runs; null when there is none. */
  readonly nextAttemptAt: Date | null
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

export class MessagesRepo extends Effect.Service<MessagesRepo>()("webhooks/MessagesRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /** graphile_worker.add_jobs over the rows of `rows` (a CTE with `id`), `data` the job data of each row. */
    const addJobs = (rows: string, data: Fragment, jobs: JobTemplate) =>
      sql`graphile_worker.add_jobs(array(
            select row(${jobs.taskId}::text, jsonb_set(${JSON.stringify(jobs.envelope)}::jsonb, '{data}', ${data})::json,
                       null, null, ${jobs.maxAttempts}::smallint, null, null, null)::graphile_worker.job_spec
              from ${sql(rows)}))`

    /**
     * One message per enabled endpoint of the org whose filter matches (none twice per event),
     * each with its first delivery job, in one statement however many endpoints match.
     */
    const createMessages = (event: { readonly id: string; readonly type: string; readonly body: string }, jobs: JobTemplate) =>
      sql<{ count: number }>`
        with created as (
          insert into webhooks.messages (org_id, endpoint_id, event_id, event_type, body)
          select e.org_id, e.id, ${event.id}::uuid, ${event.type}, ${event.body}
            from webhooks.endpoints e
           where e.enabled
             and (e.event_types is null or exists (
                   select 1 from unnest(e.event_types) as p
                    where p = '*' or p = ${event.type}::text
                       or (right(p, 2) = '.*' and starts_with(${event.type}::text, left(p, -1)))))
          on conflict (endpoint_id, event_id) do nothing
          returning id
        )
        select count(*)::int as count
          from ${addJobs("created", sql`jsonb_build_object('_tag', 'scheduled', 'messageId', created.id, 'attempt', 1)`, jobs)}`.pipe(
        Effect.map((rows) => rows[0]?.count ?? 0),
        Effect.withSpan("MessagesRepo.createMessages")
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

    const deliveryTarget = (messageId: string) =>
      sql<{
        id: string
        endpoint_id: string
        body: string
        status: MessageStatus
        next_scheduled_attempt: number
        url: string
        enabled: boolean
        headers: Record<string, string>
        rate_limit: number | null
        secret: string
        previous_secret: string | null
      }>`
        select m.id, m.endpoint_id, m.body, m.status, m.next_scheduled_attempt, e.url, e.enabled, e.headers, e.rate_limit,
               e.secret, case when e.previous_secret_expires_at > now() then e.previous_secret end as previous_secret
          from webhooks.messages m join webhooks.endpoints e on e.id = m.endpoint_id
         where m.id = ${messageId}`.pipe(
        Effect.map((rows) =>
          Option.map(
            Option.fromNullable(rows[0]),
            (row): DeliveryTarget => ({
              messageId: row.id,
              endpointId: row.endpoint_id,
              body: row.body,
              status: row.status,
              nextScheduledAttempt: row.next_scheduled_attempt,
              url: row.url,
              enabled: row.enabled,
              headers: row.headers,
              rateLimit: row.rate_limit,
              secrets: row.previous_secret === null ? [row.secret] : [row.secret, row.previous_secret]
            })
          )
        ),
        Effect.withSpan("MessagesRepo.deliveryTarget")
      )

    /**
     * Logs the attempt and moves the message on, in one statement; a success also ends the
     * endpoint's failure streak. A failed manual attempt leaves a scheduled retry in place.
     */
    const recordAttempt = (record: AttemptRecord) => {
      const scheduled = Option.isSome(record.scheduledAttempt)
      const nextScheduled = Option.getOrNull(Option.map(record.scheduledAttempt, (n) => n + 1))
      return sql`
        with attempt as (
          insert into webhooks.attempts
            (org_id, message_id, trigger, attempted_at, status_code, duration_ms, response_body, error, succeeded)
          values (core.current_org_id(), ${record.messageId}, ${scheduled ? "scheduled" : "manual"}, ${record.attemptedAt},
                  ${record.statusCode}, ${record.durationMs}, ${record.responseBody}, ${record.error}, ${record.succeeded})
        ), message as (
          update webhooks.messages set
            status = case
              when ${record.succeeded}::boolean then 'delivered'
              when ${scheduled}::boolean then case when ${record.nextAttemptAt}::timestamptz is null then 'failed' else 'pending' end
              when next_attempt_at is not null then 'pending'
              else 'failed' end,
            next_attempt_at = case
              when ${record.succeeded}::boolean then null
              when ${scheduled}::boolean then ${record.nextAttemptAt}::timestamptz
              else next_attempt_at end,
            next_scheduled_attempt = coalesce(${nextScheduled}::integer, next_scheduled_attempt),
            attempts = attempts + 1,
            last_attempt_at = ${record.attemptedAt}
          where id = ${record.messageId}
        )
        update webhooks.endpoints set failing_since = null
         where ${record.succeeded}::boolean and id = ${record.endpointId} and failing_since is not null`.pipe(
        Effect.asVoid,
        Effect.withSpan("MessagesRepo.recordAttempt")
      )
    }

    /** Starts (or continues) the endpoint's failure streak; returns when it started. */
    const recordFailure = (endpointId: string, at: Date) =>
      sql<{ failing_since: Date }>`
        update webhooks.endpoints set failing_since = coalesce(failing_since, ${at})
         where id = ${endpointId}
         returning failing_since`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.failing_since)),
        Effect.withSpan("MessagesRepo.recordFailure")
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

    /** A message whose endpoint was disabled before its attempt: it fails unsent, its retries with it. */
    const abandon = (messageId: string) =>
      sql`update webhooks.messages set status = 'failed', next_attempt_at = null where id = ${messageId} and status = 'pending'`.pipe(
        Effect.asVoid,
        Effect.withSpan("MessagesRepo.abandon")
      )

    /** Shown as pending until the manual attempt settles it. */
    const markForResend = (messageId: string) =>
      sql`update webhooks.messages set status = 'pending' where id = ${messageId}`.pipe(
        Effect.asVoid,
        Effect.withSpan("MessagesRepo.markForResend")
      )

    /** Marks the endpoint's failed messages of the period pending, each with a manual delivery job, in one statement. */
    const recover = (
      period: { readonly endpointId: string; readonly since: Date; readonly until: Date | null },
      jobs: JobTemplate
    ) =>
      sql<{ count: number }>`
        with chosen as (
          update webhooks.messages set status = 'pending'
           where endpoint_id = ${period.endpointId} and status = 'failed'
             and created_at >= ${period.since} and (${period.until}::timestamptz is null or created_at < ${period.until})
          returning id
        )
        select count(*)::int as count
          from ${addJobs("chosen", sql`jsonb_build_object('_tag', 'manual', 'messageId', chosen.id)`, jobs)}`.pipe(
        Effect.map((rows) => rows[0]?.count ?? 0),
        Effect.withSpan("MessagesRepo.recover")
      )

    return {
      createMessages,
      list,
      get,
      attempts,
      deliveryTarget,
      recordAttempt,
      recordFailure,
      disableEndpoint,
      abandon,
      markForResend,
      recover
    } as const
  })
}) {}
