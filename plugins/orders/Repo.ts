import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option } from "effect"
import { decodeCursor, encodeCursor, prefixEnd, queryWords, searchWords } from "../../core/ListQuery.ts"
import { tenantStatement } from "../../core/Tenancy.ts"
import type { ListOrdersParams, Order, OrderInput, OrderSort, OrderStatus, OrderSummary } from "./Domain.ts"
import { traced } from "../../core/Tracing.ts"

export interface ActorRef {
  readonly kind: string
  readonly id: string
}

interface SummaryRow {
  id: string
  channel: string
  external_id: string
  status: OrderStatus
  customer_name: string
  customer_phone: string
  customer_email: string | null
  currency: string
  total: string
  item_count: number
  created_at: string
  updated_at: string
}

interface DetailRow extends SummaryRow {
  items: ReadonlyArray<{ sku: string; name: string; qty: number; price: number }>
  history: ReadonlyArray<{ from: OrderStatus | null; to: OrderStatus; actorKind: string; actorId: string; note: string | null; at: string }>
}

/**
 * A timestamp as the API prints it (ISO 8601, UTC, milliseconds), formatted by PostgreSQL:
 * cheaper than parsing it into a Date and printing that again, row after row.
 */
const isoUtc = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

const toSummary = (row: SummaryRow): OrderSummary => ({
  id: row.id,
  channel: row.channel,
  externalId: row.external_id,
  status: row.status,
  customer: { name: row.customer_name, phone: row.customer_phone, email: row.customer_email },
  currency: row.currency,
  total: Number(row.total),
  itemCount: row.item_count,
  createdAt: row.created_at,
  updatedAt: row.updated_at
})

const toOrder = (row: DetailRow): Order => ({
  ...toSummary(row),
  items: row.items.map((i) => ({ ...i, lineTotal: i.qty * i.price })),
  history: row.history.map((h) => ({
    from: h.from,
    to: h.to,
    actor: { kind: h.actorKind, id: h.actorId },
    note: h.note,
    at: h.at
  }))
})

/** Sort columns; the id breaks ties, so every order is total and keyset pages are stable. */
const SORTS: Record<OrderSort, { readonly column: string; readonly type: string; readonly desc: boolean }> = {
  createdAt: { column: "o.created_at", type: "timestamptz", desc: false },
  "-createdAt": { column: "o.created_at", type: "timestamptz", desc: true },
  total: { column: "o.total", type: "bigint", desc: false },
  "-total": { column: "o.total", type: "bigint", desc: true }
}

/** The columns of an order in lists (exported for the benchmark's baseline, which runs the same SQL). */
export const SUMMARY_COLUMNS = `o.id, o.channel, o.external_id, o.status, o.customer_name, o.customer_phone, o.customer_email,
  o.currency, o.total::text as total, o.item_count, ${isoUtc("o.created_at")} as created_at, ${isoUtc("o.updated_at")} as updated_at`

/** What free-text search matches: the words of the customer's name and email, the external id and the skus. */
const orderSearchWords = (input: OrderInput) =>
  searchWords(input.customer.name, input.customer.email ?? "", input.externalId, ...input.items.map((i) => i.sku))

/**
 * The orders SQL. Every statement runs in a tenant transaction, where row-level security
 * limits it to the org's rows. Statements still name the org (`core.current_org_id()`): the
 * policies alone are a filter no index serves, while `org_id = ...` leads every index.
 */
export class OrdersRepo extends Effect.Service<OrdersRepo>()("orders/OrdersRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /**
     * Writes the order, its items, its search terms and its first history entry in one
     * statement and returns its creation time; nothing when (channel, externalId) exists.
     */
    const insert = (id: string, channel: string, input: OrderInput, total: number, actor: ActorRef, note: string | null) =>
      sql<{ created_at: Date }>`
        with o as (
          insert into orders.orders
            (id, channel, external_id, status, customer_name, customer_phone, customer_email, currency, total, item_count)
          values (${id}, ${channel}, ${input.externalId}, 'PLACED', ${input.customer.name}, ${input.customer.phone},
                  ${input.customer.email ?? null}, ${input.currency}, ${total}, ${input.items.length})
          on conflict (org_id, channel, external_id) do nothing
          returning id, created_at
        ), items as (
          insert into orders.order_items (order_id, line, sku, name, quantity, price)
          select o.id, t.line, t.sku, t.name, t.quantity, t.price
            from o, unnest(${input.items.map((i) => i.sku)}::text[], ${input.items.map((i) => i.name)}::text[],
                           ${input.items.map((i) => i.qty)}::int[], ${input.items.map((i) => i.price)}::bigint[])
                    with ordinality as t(sku, name, quantity, price, line)
        ), terms as (
          insert into orders.order_search_terms (order_id, term)
          select o.id, t.term from o, unnest(${orderSearchWords(input)}::text[]) as t(term)
        ), history as (
          insert into orders.status_history (order_id, from_status, to_status, actor_kind, actor_id, note)
          select o.id, null, 'PLACED', ${actor.kind}, ${actor.id}, ${note} from o
        )
        select created_at from o`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.created_at)),
        traced("OrdersRepo.insert")
      )

    const idOf = (channel: string, externalId: string) =>
      sql<{ id: string }>`
        select id from orders.orders
         where org_id = core.current_org_id() and channel = ${channel} and external_id = ${externalId}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.id))
      )

    /** The order's status, its row locked until the transaction ends. */
    const lockStatus = (id: string) =>
      sql<{ status: OrderStatus }>`select status from orders.orders where id = ${id} for update`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.status))
      )

    const setStatus = (id: string, from: OrderStatus, to: OrderStatus, actor: ActorRef, note: string | null) =>
      sql`
        with updated as (
          update orders.orders set status = ${to}, updated_at = now() where id = ${id} returning id
        )
        insert into orders.status_history (order_id, from_status, to_status, actor_kind, actor_id, note)
        select id, ${from}, ${to}, ${actor.kind}, ${actor.id}, ${note} from updated`.pipe(
        Effect.asVoid,
        traced("OrdersRepo.setStatus")
      )

    const get = (id: string) =>
      sql<DetailRow>`
        select ${sql.literal(SUMMARY_COLUMNS)},
               (select json_agg(json_build_object('sku', i.sku, 'name', i.name, 'qty', i.quantity, 'price', i.price) order by i.line)
                  from orders.order_items i where i.order_id = o.id) as items,
               (select json_agg(json_build_object('from', h.from_status, 'to', h.to_status, 'actorKind', h.actor_kind,
                                                  'actorId', h.actor_id, 'note', h.note, 'at', ${sql.literal(isoUtc("h.at"))}) order by h.id)
                  from orders.status_history h where h.order_id = o.id) as history
          from orders.orders o where o.id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toOrder)),
        traced("OrdersRepo.get")
      )

    const hasTermStarting = (word: string) => sql`exists (
      select 1 from orders.order_search_terms t
       where t.org_id = core.current_org_id() and t.order_id = o.id and t.term >= ${word} and t.term < ${prefixEnd(word)})`

    const list = (params: ListOrdersParams) =>
      Effect.gen(function* () {
        const sort = SORTS[params.sort]
        const cursor =
          params.cursor === undefined
            ? undefined
            : yield* decodeCursor(params.cursor, params.sort, { key: sort.type, tieBreaker: "uuid" })
        const column = sql.literal(sort.column)
        const direction = sql.literal(sort.desc ? "desc" : "asc")
        const words = queryWords(params.q)
        const conditions = [
          sql`o.org_id = core.current_org_id()`,
          ...(params.status === undefined ? [] : [sql`o.status = ${params.status}`]),
          ...(params.channel === undefined ? [] : [sql`o.channel = ${params.channel}`]),
          ...(params.from === undefined ? [] : [sql`o.created_at >= ${DateTime.toDateUtc(params.from)}`]),
          ...(params.to === undefined ? [] : [sql`o.created_at < ${DateTime.toDateUtc(params.to)}`]),
          // Each word must start a word of the order; the planner probes whichever way is cheaper.
          ...(words === "nothing" ? [sql`false`] : words.map(hasTermStarting)),
          ...(cursor === undefined
            ? []
            : [
                sql`(${column}, o.id) ${sql.literal(sort.desc ? "<" : ">")}
                    (${cursor.key}::${sql.literal(sort.type)}, ${cursor.tieBreaker}::uuid)`
              ])
        ]
        // One round trip with the tenant settings when no transaction is open (the list route).
        const rows = yield* tenantStatement(sql<SummaryRow & { sort_key: string }>`
          select ${sql.literal(SUMMARY_COLUMNS)}, (${column})::text as sort_key
            from orders.orders o
           where ${sql.and(conditions)}
           order by ${column} ${direction}, o.id ${direction}
           limit ${params.limit + 1}`)
        const page = rows.slice(0, params.limit)
        const last = page[page.length - 1]
        return {
          items: page.map(toSummary),
          nextCursor: rows.length > params.limit && last ? encodeCursor(params.sort, last.sort_key, last.id) : null
        }
      }).pipe(traced("OrdersRepo.list"))

    const channelStates = sql<{
      channel: string
      breaker: "closed" | "open" | "half_open"
      consecutive_failures: number
      cursor: string | null
      last_error: string | null
      last_run_at: Date | null
      last_success_at: Date | null
      imported: number
      rejected: number
    }>`
      select c.channel, c.breaker, c.consecutive_failures, c.cursor, c.last_error, c.last_run_at, c.last_success_at, c.imported,
             (select count(*)::int from orders.channel_rejections r where r.org_id = c.org_id and r.channel = c.channel) as rejected
        from orders.channel_sync c
       where c.org_id = core.current_org_id()
       order by c.channel`.pipe(
      Effect.map((rows) =>
        rows.map((r) => ({
          channel: r.channel,
          breaker: r.breaker,
          consecutiveFailures: r.consecutive_failures,
          cursor: r.cursor,
          lastError: r.last_error,
          lastRunAt: r.last_run_at === null ? null : r.last_run_at.toISOString(),
          lastSuccessAt: r.last_success_at === null ? null : r.last_success_at.toISOString(),
          imported: r.imported,
          rejected: r.rejected
        }))
      ),
      Effect.withSpan("OrdersRepo.channelStates")
    )

    return { insert, idOf, lockStatus, setStatus, get, list, channelStates } as const
  })
}) {}
