import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { recordAudit } from "../../core/Audit.ts"
import { NotFound } from "../../core/Errors.ts"
import { decodeCursor, encodeCursor, prefixEnd, queryWords, searchWords } from "../../core/ListQuery.ts"
import {
  ItemReserved,
  LocationTaken,
  SkuTaken,
  type CreateItem,
  type CreateLocation,
  type Item,
  type ItemSort,
  type ListItemsParams,
  type Location,
  type UpdateItem
} from "./Domain.ts"
import { StockLedger } from "./Stock.ts"

interface ItemRow {
  id: string
  sku: string
  name: string
  unit: string
  reorder_threshold: number
  attributes: Record<string, unknown>
  on_hand: number
  reserved: number
  available: number
  low_stock: boolean
  locations: ReadonlyArray<{ location: string; onHand: number; reserved: number; available: number }>
  created_at: Date
  updated_at: Date
  deleted_at: Date | null
  sort_key: string
}

const iso = (date: Date) => date.toISOString()

const toItem = (row: ItemRow): Item => ({
  id: row.id,
  sku: row.sku,
  name: row.name,
  unit: row.unit,
  reorderThreshold: row.reorder_threshold,
  attributes: row.attributes,
  onHand: row.on_hand,
  reserved: row.reserved,
  available: row.available,
  lowStock: row.low_stock,
  locations: row.locations,
  createdAt: iso(row.created_at),
  updatedAt: iso(row.updated_at),
  deletedAt: row.deleted_at === null ? null : iso(row.deleted_at)
})

/** Sort key columns; the sku (unique per org) breaks ties, so every order is total. */
const SORTS: Record<ItemSort, { readonly column: string; readonly type: string; readonly desc: boolean }> = {
  sku: { column: "i.sku", type: "text", desc: false },
  "-sku": { column: "i.sku", type: "text", desc: true },
  name: { column: "i.name", type: "text", desc: false },
  "-name": { column: "i.name", type: "text", desc: true },
  available: { column: "i.available", type: "int", desc: false },
  "-available": { column: "i.available", type: "int", desc: true },
  createdAt: { column: "i.created_at", type: "timestamptz", desc: false },
  "-createdAt": { column: "i.created_at", type: "timestamptz", desc: true }
}

const notFound = (sku: string) => new NotFound({ message: `item ${sku} not found`, resource: "item", id: sku })

/**
 * Items and locations of the current tenant. Every statement runs in a tenant transaction,
 * where row-level security limits it to the org's rows. Statements still name the org
 * (`core.current_org_id()`): the policies alone are a filter no index serves, while
 * `org_id = ...` leads every index.
 */
export class ItemsRepo extends Effect.Service<ItemsRepo>()("inventory/ItemsRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const ledger = yield* StockLedger

    const columns = (sortKey: string) => sql`
      i.id, i.sku, i.name, i.unit, i.reorder_threshold, i.attributes, i.on_hand, i.reserved, i.available,
      i.low_stock, i.created_at, i.updated_at, i.deleted_at, (${sql.literal(sortKey)})::text as sort_key,
      coalesce((
        select json_agg(json_build_object('location', l.code, 'onHand', s.on_hand, 'reserved', s.reserved,
                                          'available', s.on_hand - s.reserved) order by l.code)
          from inventory.stock s join inventory.locations l on l.id = s.location_id
         where s.item_id = i.id), '[]') as locations`

    const bySku = (sku: string) =>
      sql<ItemRow>`select ${columns("i.sku")} from inventory.items i where i.org_id = core.current_org_id() and i.sku = ${sku}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toItem))
      )

    // Deletes only the words that went, so the insert never meets a row this statement deletes.
    const replaceTerms = (itemId: string, terms: ReadonlyArray<string>) =>
      sql`
        with gone as (
          delete from inventory.item_search_terms
           where org_id = core.current_org_id() and item_id = ${itemId} and term <> all(${terms}::text[])
        )
        insert into inventory.item_search_terms (item_id, term)
        select ${itemId}, t.term from unnest(${terms}::text[]) as t(term)
        on conflict do nothing`

    const get = (sku: string) =>
      bySku(sku).pipe(
        Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound(sku)), onSome: Effect.succeed })),
        Effect.withSpan("ItemsRepo.get")
      )

    const createLocation = (input: CreateLocation) =>
      sql<{ id: string; code: string; name: string; created_at: Date }>`
        insert into inventory.locations (code, name) values (${input.code}, ${input.name})
        on conflict (org_id, code) do nothing
        returning id, code, name, created_at`.pipe(
        Effect.flatMap(([row]) =>
          row
            ? Effect.succeed<Location>({ id: row.id, code: row.code, name: row.name, createdAt: iso(row.created_at) })
            : Effect.fail(new LocationTaken({ message: `location ${input.code} already exists`, code: input.code }))
        ),
        Effect.withSpan("ItemsRepo.createLocation")
      )

    const listLocations = sql<{ id: string; code: string; name: string; created_at: Date }>`
      select id, code, name, created_at from inventory.locations where org_id = core.current_org_id() order by code`.pipe(
      Effect.map((rows) => rows.map((r): Location => ({ id: r.id, code: r.code, name: r.name, createdAt: iso(r.created_at) }))),
      Effect.withSpan("ItemsRepo.listLocations")
    )

    const create = (input: CreateItem) =>
      Effect.gen(function* () {
        // A new item starts below a positive threshold without having crossed it: no event.
        const inserted = yield* sql<{ id: string }>`
          with item as (
            insert into inventory.items (sku, name, unit, reorder_threshold, attributes, low_stock)
            values (${input.sku}, ${input.name}, ${input.unit}, ${input.reorderThreshold},
                    ${JSON.stringify(input.attributes)}::jsonb, ${input.reorderThreshold > 0})
            on conflict (org_id, sku) do nothing
            returning id
          ), terms as (
            insert into inventory.item_search_terms (item_id, term)
            select item.id, t.term from item, unnest(${searchWords(input.sku, input.name)}::text[]) as t(term)
          )
          select id from item`
        if (inserted.length === 0) {
          const existing = yield* bySku(input.sku)
          const deleted = Option.exists(existing, (item) => item.deletedAt !== null)
          return yield* new SkuTaken({
            message: deleted
              ? `sku ${input.sku} belongs to a deleted item; restore it instead`
              : `sku ${input.sku} already exists`,
            sku: input.sku,
            deleted
          })
        }
        yield* recordAudit({ action: "inventory.item_created", targetType: "item", targetId: input.sku })
        // Just inserted in this transaction, so it is there.
        return yield* get(input.sku).pipe(Effect.catchTag("NotFound", Effect.die))
      }).pipe(Effect.withSpan("ItemsRepo.create"))

    const update = (sku: string, patch: UpdateItem) =>
      Effect.gen(function* () {
        const updated = yield* sql<{ id: string }>`
          update inventory.items set
            name = coalesce(${patch.name ?? null}, name),
            unit = coalesce(${patch.unit ?? null}, unit),
            reorder_threshold = coalesce(${patch.reorderThreshold ?? null}::int, reorder_threshold),
            attributes = coalesce(${patch.attributes === undefined ? null : JSON.stringify(patch.attributes)}::jsonb, attributes),
            updated_at = now()
           where org_id = core.current_org_id() and sku = ${sku} and deleted_at is null
          returning id`
        if (updated.length === 0) return yield* notFound(sku)
        if (patch.name !== undefined) yield* replaceTerms(updated[0]!.id, searchWords(sku, patch.name))
        // A new threshold can put the item across it, which is a crossing like any other.
        yield* ledger.syncLowStock(updated.map((r) => r.id))
        yield* recordAudit({ action: "inventory.item_updated", targetType: "item", targetId: sku, details: { ...patch } })
        return yield* get(sku)
      }).pipe(Effect.withSpan("ItemsRepo.update"))

    const remove = (sku: string) =>
      Effect.gen(function* () {
        const [row] = yield* sql<{ reserved: number; deleted: boolean }>`
          select reserved, deleted_at is not null as deleted from inventory.items
           where org_id = core.current_org_id() and sku = ${sku}
           for update`
        if (!row || row.deleted) return yield* notFound(sku)
        if (row.reserved > 0) {
          return yield* new ItemReserved({
            message: `item ${sku} has ${row.reserved} units reserved; release or ship them first`,
            sku,
            reserved: row.reserved
          })
        }
        yield* sql`
          update inventory.items set deleted_at = now(), updated_at = now() where org_id = core.current_org_id() and sku = ${sku}`
        yield* recordAudit({ action: "inventory.item_deleted", targetType: "item", targetId: sku })
      }).pipe(Effect.withSpan("ItemsRepo.remove"))

    const restore = (sku: string) =>
      Effect.gen(function* () {
        const restored = yield* sql`
          update inventory.items set deleted_at = null, updated_at = now()
           where org_id = core.current_org_id() and sku = ${sku} and deleted_at is not null
          returning id`
        if (restored.length === 0) return yield* notFound(sku)
        yield* recordAudit({ action: "inventory.item_restored", targetType: "item", targetId: sku })
        return yield* get(sku)
      }).pipe(Effect.withSpan("ItemsRepo.restore"))

    const hasTermStarting = (word: string) => sql`exists (
      select 1 from inventory.item_search_terms t
       where t.org_id = core.current_org_id() and t.item_id = i.id and t.term >= ${word} and t.term < ${prefixEnd(word)})`

    const list = (params: ListItemsParams) =>
      Effect.gen(function* () {
        const sort = SORTS[params.sort]
        const cursor = params.cursor === undefined ? undefined : yield* decodeCursor(params.cursor, params.sort, { key: sort.type, tieBreaker: "text" })
        const column = sql.literal(sort.column)
        const direction = sql.literal(sort.desc ? "desc" : "asc")
        const words = queryWords(params.q)
        const conditions = [
          sql`i.org_id = core.current_org_id()`,
          ...(params.includeDeleted ? [] : [sql`i.deleted_at is null`]),
          ...(params.lowStock ? [sql`i.low_stock`] : []),
          ...(params.location === undefined
            ? []
            : [
                sql`exists (select 1 from inventory.stock s join inventory.locations l on l.id = s.location_id
                             where s.item_id = i.id and l.org_id = core.current_org_id() and l.code = ${params.location})`
              ]),
          // Each word must start a word of the sku or name; the planner probes whichever way is cheaper.
          ...(words === "nothing" ? [sql`false`] : words.map(hasTermStarting)),
          ...(cursor === undefined
            ? []
            : [sql`(${column}, i.sku) ${sql.literal(sort.desc ? "<" : ">")} (${cursor.key}::${sql.literal(sort.type)}, ${cursor.tieBreaker})`])
        ]
        const rows = yield* sql<ItemRow>`
          select ${columns(sort.column)} from inventory.items i
           where ${sql.and(conditions)}
           order by ${column} ${direction}, i.sku ${direction}
           limit ${params.limit + 1}`
        const page = rows.slice(0, params.limit)
        const last = page[page.length - 1]
        return {
          items: page.map(toItem),
          nextCursor: rows.length > params.limit && last ? encodeCursor(params.sort, last.sort_key, last.sku) : null
        }
      }).pipe(Effect.withSpan("ItemsRepo.list"))

    const adjustmentLog = (sku: string, params: { readonly limit: number; readonly cursor?: number | undefined }) =>
      Effect.gen(function* () {
        yield* get(sku)
        const rows = yield* sql<{
          id: string
          batch_id: string
          location: string
          kind: "receive" | "ship" | "correct"
          quantity: number
          on_hand_after: number
          reason: string
          reference: string | null
          actor_kind: string
          actor_id: string
          at: Date
        }>`
          select a.id::text, a.batch_id, l.code as location, a.kind, a.quantity, a.on_hand_after, a.reason, a.reference,
                 a.actor_kind, a.actor_id, a.at
            from inventory.adjustments a
            join inventory.items i on i.id = a.item_id
            join inventory.locations l on l.id = a.location_id
           where a.org_id = core.current_org_id() and i.org_id = core.current_org_id() and i.sku = ${sku}
             and (${params.cursor ?? null}::bigint is null or a.id < ${params.cursor ?? null})
           order by a.id desc
           limit ${params.limit + 1}`
        const page = rows.slice(0, params.limit)
        return {
          items: page.map((r) => ({
            id: Number(r.id),
            batchId: r.batch_id,
            sku,
            location: r.location,
            kind: r.kind,
            quantity: r.quantity,
            onHandAfter: r.on_hand_after,
            reason: r.reason,
            reference: r.reference,
            actor: { kind: r.actor_kind, id: r.actor_id },
            at: iso(r.at)
          })),
          nextCursor: rows.length > params.limit ? page[page.length - 1]!.id : null
        }
      }).pipe(Effect.withSpan("ItemsRepo.adjustmentLog"))

    const reservations = (reference: string) =>
      sql<{
        sku: string
        location: string
        quantity: number
        status: "active" | "released" | "committed"
        expires_at: Date | null
        created_at: Date
      }>`
        select i.sku, l.code as location, r.quantity, r.status, r.expires_at, r.created_at
          from inventory.reservations r
          join inventory.items i on i.id = r.item_id
          join inventory.locations l on l.id = r.location_id
         where r.org_id = core.current_org_id() and r.reference = ${reference}
         order by r.id`.pipe(
        Effect.map((rows) => ({
          reference,
          lines: rows.map((r) => ({
            sku: r.sku,
            location: r.location,
            quantity: r.quantity,
            status: r.status,
            expiresAt: r.expires_at === null ? null : iso(r.expires_at),
            createdAt: iso(r.created_at)
          }))
        })),
        Effect.withSpan("ItemsRepo.reservations")
      )

    return { get, createLocation, listLocations, create, update, remove, restore, list, adjustmentLog, reservations } as const
  })
}) {}
