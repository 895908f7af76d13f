import { SqlClient } from "@effect/sql"
import { DateTime, Duration, Effect, Option } from "effect"
import type { CreateEndpoint, Endpoint, PageParams, UpdateEndpoint } from "./Domain.ts"

/** Every query here runs in a tenant transaction: row-level security scopes it to the org. */

interface EndpointRow {
  id: string
  seq: string
  url: string
  description: string
  event_types: Array<string> | null
  enabled: boolean
  disabled_reason: Endpoint["disabledReason"]
  headers: Record<string, string>
  rate_limit: number | null
  failing_since: Date | null
  created_at: Date
  updated_at: Date
}

const columns = `id, seq::text, url, description, event_types, enabled, disabled_reason, headers, rate_limit,
  failing_since, created_at, updated_at`

const utcOrNull = (date: Date | null) => (date === null ? null : DateTime.unsafeFromDate(date))

const toEndpoint = (row: EndpointRow): Endpoint => ({
  id: row.id,
  url: row.url,
  description: row.description,
  eventTypes: row.event_types,
  enabled: row.enabled,
  disabledReason: row.disabled_reason,
  headers: row.headers,
  rateLimit: row.rate_limit,
  failingSince: utcOrNull(row.failing_since),
  createdAt: DateTime.unsafeFromDate(row.created_at),
  updatedAt: DateTime.unsafeFromDate(row.updated_at)
})

const firstEndpoint = (rows: ReadonlyArray<EndpointRow>) => Option.map(Option.fromNullable(rows[0]), toEndpoint)

export class EndpointsRepo extends Effect.Service<EndpointsRepo>()("webhooks/EndpointsRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const insert = (input: CreateEndpoint, secret: string) =>
      sql<EndpointRow>`
        insert into webhooks.endpoints (org_id, url, description, event_types, enabled, disabled_reason, headers, rate_limit, secret)
        values (core.current_org_id(), ${input.url}, ${input.description}, ${input.eventTypes}::text[], ${input.enabled},
                ${input.enabled ? null : "manual"}, ${JSON.stringify(input.headers)}::jsonb, ${input.rateLimit}, ${secret})
        returning ${sql.literal(columns)}`.pipe(
        Effect.map((rows) => toEndpoint(rows[0]!)),
        Effect.withSpan("EndpointsRepo.insert")
      )

    const list = (params: PageParams) =>
      Effect.gen(function* () {
        const rows = yield* sql<EndpointRow>`
          select ${sql.literal(columns)} from webhooks.endpoints
           where (${params.cursor ?? null}::bigint is null or seq > ${params.cursor ?? null})
           order by seq
           limit ${params.limit + 1}`
        const items = rows.slice(0, params.limit)
        return {
          items: items.map(toEndpoint),
          nextCursor: rows.length > params.limit ? items[items.length - 1]!.seq : null
        }
      }).pipe(Effect.withSpan("EndpointsRepo.list"))

    const get = (id: string) =>
      sql<EndpointRow>`select ${sql.literal(columns)} from webhooks.endpoints where id = ${id}`.pipe(
        Effect.map(firstEndpoint),
        Effect.withSpan("EndpointsRepo.get")
      )

    /**
     * Applies the fields present in `patch`. Enabling clears the failure streak, so an endpoint
     * re-enabled after being disabled for failing gets its full `disableAfter` again.
     */
    const update = (id: string, patch: UpdateEndpoint) =>
      sql<EndpointRow>`
        update webhooks.endpoints set
          url = coalesce(${patch.url ?? null}, url),
          description = coalesce(${patch.description ?? null}, description),
          event_types = case when ${patch.eventTypes !== undefined}::boolean then ${patch.eventTypes ?? null}::text[] else event_types end,
          headers = coalesce(${patch.headers === undefined ? null : JSON.stringify(patch.headers)}::jsonb, headers),
          rate_limit = case when ${patch.rateLimit !== undefined}::boolean then ${patch.rateLimit ?? null}::integer else rate_limit end,
          enabled = coalesce(${patch.enabled ?? null}::boolean, enabled),
          disabled_reason = case
            when ${patch.enabled ?? null}::boolean then null
            when not ${patch.enabled ?? null}::boolean then case when enabled then 'manual' else disabled_reason end
            else disabled_reason end,
          failing_since = case when ${patch.enabled === true}::boolean and not enabled then null else failing_since end,
          updated_at = now()
        where id = ${id}
        returning ${sql.literal(columns)}`.pipe(Effect.map(firstEndpoint), Effect.withSpan("EndpointsRepo.update"))

    const remove = (id: string) =>
      sql<{ id: string }>`delete from webhooks.endpoints where id = ${id} returning id`.pipe(
        Effect.map((rows) => rows.length === 1),
        Effect.withSpan("EndpointsRepo.remove")
      )

    const secret = (id: string) =>
      sql<{ secret: string; previous_secret_expires_at: Date | null }>`
        select secret, case when previous_secret_expires_at > now() then previous_secret_expires_at end as previous_secret_expires_at
          from webhooks.endpoints where id = ${id}`.pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (row) => ({
            secret: row.secret,
            previousSecretExpiresAt: utcOrNull(row.previous_secret_expires_at)
          }))
        ),
        Effect.withSpan("EndpointsRepo.secret")
      )

    /** The new secret signs at once; the current one keeps signing alongside for `overlap`. */
    const rotate = (id: string, next: string, overlap: Duration.Duration) =>
      sql<{ previous_secret_expires_at: Date }>`
        update webhooks.endpoints set
          previous_secret = secret,
          previous_secret_expires_at = now() + make_interval(secs => ${Duration.toSeconds(overlap)}),
          secret = ${next},
          updated_at = now()
        where id = ${id}
        returning previous_secret_expires_at`.pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (row) => ({
            secret: next,
            previousSecretExpiresAt: utcOrNull(row.previous_secret_expires_at)
          }))
        ),
        Effect.withSpan("EndpointsRepo.rotate")
      )

    return { insert, list, get, update, remove, secret, rotate } as const
  })
}) {}
