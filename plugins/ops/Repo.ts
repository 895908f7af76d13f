import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option } from "effect"
import { currentOrgId } from "../../core/Tenancy.ts"
import type { DeadLetterFilter, DeadLetterSelection, ListDeadLettersParams } from "./Domain.ts"

interface DeadLetterRow {
  id: string
  job_id: string
  task_identifier: string
  queue_name: string | null
  payload: unknown
  org_id: string | null
  reason: "undecodable" | "exhausted" | "non_retryable"
  attempts: number
  max_attempts: number
  last_error: string
  job_created_at: Date
  failed_at: Date
}

const toDeadLetter = (row: DeadLetterRow) => ({
  id: Number(row.id),
  jobId: row.job_id,
  task: row.task_identifier,
  queueName: row.queue_name,
  payload: row.payload,
  orgId: row.org_id,
  reason: row.reason,
  attempts: row.attempts,
  maxAttempts: row.max_attempts,
  lastError: row.last_error,
  jobCreatedAt: DateTime.unsafeFromDate(row.job_created_at),
  failedAt: DateTime.unsafeFromDate(row.failed_at)
})

const columns = `id::text, job_id::text, task_identifier, queue_name, payload, org_id, reason, attempts,
  max_attempts, last_error, job_created_at, failed_at`

const toDate = (value: DateTime.Utc | undefined) => (value === undefined ? null : DateTime.toDateUtc(value))

/** The dead-letter table (core.dead_letters), for the operator routes. */
export class OpsRepo extends Effect.Service<OpsRepo>()("ops/OpsRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /**
     * The caller's reach: an organisation's member or key sees only its organisation's dead
     * letters (their payloads are its data); the operator, who has none, sees all.
     */
    const visible = Effect.map(currentOrgId, (org) => {
      const orgId = Option.getOrNull(org)
      return sql`(${orgId}::text is null or org_id = ${orgId})`
    })

    /** Matches a selection: explicit ids, or a filter (an empty filter selects everything). */
    const matches = (filter: typeof DeadLetterFilter.Type) =>
      sql.and([
        sql`(${filter.task ?? null}::text is null or task_identifier = ${filter.task ?? null})`,
        sql`(${filter.reason ?? null}::text is null or reason = ${filter.reason ?? null})`,
        sql`(${toDate(filter.since)}::timestamptz is null or failed_at >= ${toDate(filter.since)})`,
        sql`(${toDate(filter.until)}::timestamptz is null or failed_at < ${toDate(filter.until)})`
      ])
    const where = (selection: DeadLetterSelection) =>
      "ids" in selection ? sql`id = any(${selection.ids}::bigint[])` : matches(selection.filter)

    const list = (params: ListDeadLettersParams) =>
      Effect.gen(function* () {
        const rows = yield* sql<DeadLetterRow>`
          select ${sql.literal(columns)} from core.dead_letters
           where ${matches(params)} and ${yield* visible}
             and (${params.cursor ?? null}::bigint is null or id < ${params.cursor ?? null})
           order by id desc
           limit ${params.limit + 1}`
        const items = rows.slice(0, params.limit).map(toDeadLetter)
        const nextCursor = rows.length > params.limit ? String(items[items.length - 1]!.id) : null
        return { items, nextCursor }
      }).pipe(Effect.withSpan("OpsRepo.list"))

    const get = (id: number) =>
      Effect.flatMap(visible, (reach) => sql<DeadLetterRow>`select ${sql.literal(columns)} from core.dead_letters where id = ${id} and ${reach}`).pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toDeadLetter)),
        Effect.withSpan("OpsRepo.get")
      )

    /**
     * Moves the selected dead letters back into the queue in one statement: the rows are
     * deleted and their jobs added in the same transaction, so a job is never both queued
     * and dead-lettered, nor lost.
     */
    const retry = (selection: DeadLetterSelection) =>
      Effect.flatMap(visible, (reach) => sql<{ dead_letter_id: string; job_id: string }>`
        with moved as (
          delete from core.dead_letters where ${where(selection)} and ${reach}
          returning id, task_identifier, queue_name, payload, max_attempts
        )
        select moved.id::text as dead_letter_id,
               (graphile_worker.add_job(
                  identifier => moved.task_identifier,
                  payload => moved.payload::json,
                  queue_name => moved.queue_name,
                  max_attempts => moved.max_attempts::smallint
               )).id::text as job_id
          from moved
         order by moved.id`).pipe(
        Effect.map((rows) => rows.map((r) => ({ deadLetterId: Number(r.dead_letter_id), jobId: r.job_id }))),
        Effect.withSpan("OpsRepo.retry")
      )

    const discard = (selection: DeadLetterSelection) =>
      Effect.flatMap(visible, (reach) => sql<{ count: number }>`
        with gone as (delete from core.dead_letters where ${where(selection)} and ${reach} returning 1)
        select count(*)::int as count from gone`).pipe(
        Effect.map((rows) => rows[0]?.count ?? 0),
        Effect.withSpan("OpsRepo.discard")
      )

    const deadLetterCounts = Effect.flatMap(visible, (reach) => sql<{ task: string; count: number }>`
      select task_identifier as task, count(*)::int as count from core.dead_letters where ${reach} group by task_identifier`).pipe(
      Effect.map((rows) => new Map(rows.map((r) => [r.task, r.count])))
    )

    /**
     * Deletes dead letters and outbox events older than the retention and records the run,
     * in one statement.
     */
    const prune = (retentionDays: number) =>
      sql<{ dead_letters: number; outbox_events: number }>`
        with dl as (
          delete from core.dead_letters where failed_at < now() - make_interval(days => ${retentionDays}) returning 1
        ), ev as (
          delete from core.outbox_events where occurred_at < now() - make_interval(days => ${retentionDays}) returning 1
        )
        insert into ops.prune_runs (retention_days, dead_letters_deleted, outbox_events_deleted)
        select ${retentionDays}, (select count(*) from dl), (select count(*) from ev)
        returning dead_letters_deleted as dead_letters, outbox_events_deleted as outbox_events`.pipe(
        Effect.map((rows) => ({ deadLetters: rows[0]!.dead_letters, outboxEvents: rows[0]!.outbox_events })),
        Effect.withSpan("OpsRepo.prune")
      )

    return { list, get, retry, discard, deadLetterCounts, prune } as const
  })
}) {}
