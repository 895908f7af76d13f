import { SqlClient, type Statement } from "@effect/sql"
import { Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { CurrentActor } from "../../core/Actor.ts"
import { recordAudit } from "../../core/Audit.ts"
import { EventRegistry, publish, type EventType } from "../../core/Events.ts"
import { InsufficientStock, StockReservations, UnknownSku, type StockLine } from "../../core/Stock.ts"
import { UnknownLocation, type Adjustment, type CreateAdjustment } from "./Domain.ts"
import { InventoryAdjusted, LowStock } from "./Events.ts"

interface LockedItem {
  readonly id: string
  readonly sku: string
  readonly available: number
}

interface Crossing {
  readonly id: string
  readonly sku: string
  readonly name: string
  readonly available: number
  readonly reorderThreshold: number
}

/**
 * What an UPDATE of items (aliased `i`, joined to its pre-update self as `old`) returns for the
 * low-stock rule: the item crossed when it is low now and was not before, so an item already
 * below its threshold stays quiet. The statement sets `low_stock` from the new quantities.
 */
const CROSSED = `i.id, i.sku, i.name, i.on_hand - i.reserved as available, i.reorder_threshold as "reorderThreshold",
  i.low_stock and not old.low_stock as crossed`

const EXPIRY_BATCH = 500

/** Who a log line names: the request's actor, else the platform (a cron task). */
const actorRef = Effect.map(
  Effect.serviceOption(CurrentActor),
  Option.match({ onNone: () => ({ kind: "system", id: "system" }), onSome: (a) => ({ kind: a.kind, id: a.id }) })
)

/** Sums quantities per key, sorted by key: the order rows are locked in. */
const sumBy = <A>(lines: ReadonlyArray<A>, key: (line: A) => string, quantity: (line: A) => number) => {
  const sums = new Map<string, number>()
  for (const line of lines) sums.set(key(line), (sums.get(key(line)) ?? 0) + quantity(line))
  return [...sums].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

/**
 * Every change of stock: reservations, adjustments, shipments, expiry. Each runs on the
 * current connection (a tenant transaction, or platform work for expiry) and first locks the
 * items concerned with `select ... for update` ordered by (org, sku), so two transactions
 * touching the same items queue up instead of deadlocking, and every check below reads
 * stock no one else can change until commit.
 */
export class StockLedger extends Effect.Service<StockLedger>()("inventory/StockLedger", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const events = yield* EventRegistry

    // Events are published in the caller's transaction. The registry is the app's, captured
    // here so the core StockReservations methods need nothing from their caller; a payload
    // that does not encode, or an undeclared event, is a bug rather than a failure to handle.
    const emit = <T extends string, A, I>(event: EventType<T, A, I>, payload: A) =>
      publish(event, payload).pipe(
        Effect.catchTags({ ParseError: Effect.die, UnknownEventType: Effect.die }),
        Effect.provideService(EventRegistry, events)
      )

    const lockBySku = (skus: ReadonlyArray<string>) =>
      sql<LockedItem>`
        select id, sku, available from inventory.items
         where org_id = core.current_org_id() and sku = any(${skus}::text[]) and deleted_at is null
         order by org_id, sku
         for update`.pipe(Effect.map((rows) => new Map(rows.map((r) => [r.sku, r]))))

    const lockReserved = (match: Statement.Fragment, limit: number | null = null) =>
      sql<{ id: string }>`
        select i.id from inventory.items i
         where i.id in (select item_id from inventory.reservations where status = 'active' and ${match})
         order by i.org_id, i.sku
         limit ${limit}
         for update`.pipe(Effect.map((rows) => rows.map((r) => r.id)))

    /** Items whose available stock just fell below their threshold: what `inventory.low_stock` announces. */
    const announce = (crossed: ReadonlyArray<Crossing>) =>
      Effect.forEach(
        crossed,
        ({ id, sku, name, available, reorderThreshold }) => emit(LowStock, { itemId: id, sku, name, available, reorderThreshold }),
        { discard: true }
      )

    /**
     * Records whether each item is now below its threshold, for a change that is not a stock
     * movement (a new threshold); stock statements keep `low_stock` current in their own
     * UPDATE of the item (see CROSSED). An item already low stays quiet.
     */
    const syncLowStock = (itemIds: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        if (itemIds.length === 0) return
        const flipped = yield* sql<Crossing & { low_stock: boolean }>`
          update inventory.items set low_stock = available < reorder_threshold
           where id = any(${itemIds}::uuid[]) and low_stock <> (available < reorder_threshold)
          returning id, sku, name, available, reorder_threshold as "reorderThreshold", low_stock`
        yield* announce(flipped.filter((r) => r.low_stock))
      })

    const reserve = (reference: string, lines: ReadonlyArray<StockLine>, options?: { readonly expiresAt?: Date }) =>
      Effect.gen(function* () {
        const wanted = sumBy(lines, (l) => l.sku, (l) => l.quantity)
        const locked = yield* lockBySku(wanted.map(([sku]) => sku))
        const unknown = wanted.find(([sku]) => !locked.has(sku))
        if (unknown) return yield* new UnknownSku({ message: `unknown sku ${unknown[0]}`, sku: unknown[0] })
        for (const [sku, quantity] of wanted) {
          const available = locked.get(sku)!.available
          if (available < quantity) {
            return yield* new InsufficientStock({
              message: `sku ${sku}: ${quantity} requested, ${available} available`,
              sku,
              requested: quantity,
              available
            })
          }
        }
        const itemIds = wanted.map(([sku]) => locked.get(sku)!.id)
        // Takes from the locations with the most free stock first (then by id, so the split is
        // deterministic); the item-level check above guarantees the locations cover each line.
        const crossed = yield* sql<Crossing>`
          with wanted as (
            select * from unnest(${itemIds}::uuid[], ${wanted.map(([, q]) => q)}::int[]) as w(item_id, quantity)
          ), free as (
            select s.item_id, s.location_id, s.on_hand - s.reserved as free, w.quantity,
                   sum(s.on_hand - s.reserved) over (
                     partition by s.item_id order by s.on_hand - s.reserved desc, s.location_id
                     rows between unbounded preceding and current row) as upto
              from inventory.stock s join wanted w using (item_id)
             where s.on_hand > s.reserved
          ), allocation as (
            select item_id, location_id, least(free, quantity - (upto - free))::int as quantity
              from free where upto - free < quantity
          ), stock_rows as (
            update inventory.stock s set reserved = s.reserved + a.quantity, updated_at = now()
              from allocation a where s.item_id = a.item_id and s.location_id = a.location_id
          ), item_rows as (
            update inventory.items i
               set reserved = i.reserved + w.quantity,
                   low_stock = i.on_hand - i.reserved - w.quantity < i.reorder_threshold,
                   updated_at = now()
              from wanted w, inventory.items old
             where i.id = w.item_id and old.id = i.id
            returning ${sql.literal(CROSSED)}
          ), reserved as (
            insert into inventory.reservations (reference, item_id, location_id, quantity, expires_at)
            select ${reference}, item_id, location_id, quantity, ${options?.expiresAt ?? null}::timestamptz from allocation
          )
          select * from item_rows where crossed`
        yield* announce(crossed)
      }).pipe(Effect.withSpan("StockLedger.reserve"))

    /** Gives back the active reservations matching `match`, of at most `limit` items. */
    const releaseMatching = (match: Statement.Fragment, limit: number | null = null) =>
      Effect.gen(function* () {
        const itemIds = yield* lockReserved(match, limit)
        if (itemIds.length === 0) return 0
        const rows = yield* sql<{ released: number }>`
          with released as (
            update inventory.reservations set status = 'released', closed_at = now()
             where status = 'active' and ${match} and item_id = any(${itemIds}::uuid[])
            returning item_id, location_id, quantity
          ), stock_rows as (
            update inventory.stock s set reserved = s.reserved - r.quantity, updated_at = now()
              from (select item_id, location_id, sum(quantity)::int as quantity from released group by 1, 2) r
             where s.item_id = r.item_id and s.location_id = r.location_id
          ), item_rows as (
            update inventory.items i
               set reserved = i.reserved - r.quantity,
                   low_stock = i.on_hand - i.reserved + r.quantity < i.reorder_threshold,
                   updated_at = now()
              from (select item_id, sum(quantity)::int as quantity from released group by 1) r
             where i.id = r.item_id
          )
          select count(*)::int as released from released`
        return rows[0]?.released ?? 0
      })

    const ofReference = (reference: string) => sql`org_id = core.current_org_id() and reference = ${reference}`

    const release = (reference: string) =>
      releaseMatching(ofReference(reference)).pipe(Effect.asVoid, Effect.withSpan("StockLedger.release"))

    /** Ships the reference's reserved units: on-hand and reserved go down together, logged as `ship`. */
    const commit = (reference: string) =>
      Effect.gen(function* () {
        const itemIds = yield* lockReserved(ofReference(reference))
        if (itemIds.length === 0) return
        const actor = yield* actorRef
        const batchId = randomUUID()
        const reason = "reserved units shipped"
        const lines = yield* sql<{ sku: string; location: string; quantity: number; on_hand: number }>`
          with committed as (
            update inventory.reservations set status = 'committed', closed_at = now()
             where status = 'active' and ${ofReference(reference)} and item_id = any(${itemIds}::uuid[])
            returning item_id, location_id, quantity
          ), stock_rows as (
            update inventory.stock s set on_hand = s.on_hand - c.quantity, reserved = s.reserved - c.quantity, updated_at = now()
              from (select item_id, location_id, sum(quantity)::int as quantity from committed group by 1, 2) c
             where s.item_id = c.item_id and s.location_id = c.location_id
            returning s.item_id, s.location_id, s.on_hand, c.quantity
          ), item_rows as (
            update inventory.items i set on_hand = i.on_hand - c.quantity, reserved = i.reserved - c.quantity, updated_at = now()
              from (select item_id, sum(quantity)::int as quantity from committed group by 1) c
             where i.id = c.item_id
          ), log as (
            insert into inventory.adjustments
              (batch_id, item_id, location_id, kind, quantity, on_hand_after, reason, reference, actor_kind, actor_id)
            select ${batchId}, item_id, location_id, 'ship', -quantity, on_hand, ${reason}, ${reference}, ${actor.kind}, ${actor.id}
              from stock_rows
          )
          select i.sku, l.code as location, -s.quantity as quantity, s.on_hand
            from stock_rows s
            join inventory.items i on i.id = s.item_id
            join inventory.locations l on l.id = s.location_id
           order by i.sku, l.code`
        if (lines.length === 0) return
        yield* emit(InventoryAdjusted, {
          batchId,
          kind: "ship",
          reason,
          reference,
          lines: lines.map((l) => ({ sku: l.sku, location: l.location, quantity: l.quantity, onHand: l.on_hand }))
        })
      }).pipe(Effect.withSpan("StockLedger.commit"))

    /**
     * Releases expired reservations of every org (platform work: a cron task), of at most
     * EXPIRY_BATCH items per call, so one transaction never holds the locks of a whole backlog
     * while orders wait for them; the task calls it until nothing is left.
     */
    const expire = releaseMatching(sql`expires_at <= now()`, EXPIRY_BATCH).pipe(Effect.withSpan("StockLedger.expire"))

    /**
     * Applies an adjustment: on-hand stock changes by each line, never below what is reserved
     * there, and every line goes to the log, all in the caller's transaction.
     */
    const adjust = (input: CreateAdjustment) =>
      Effect.gen(function* () {
        const sign = input.kind === "ship" ? -1 : 1
        // Lines of one sku and location add up; a pair whose lines cancel out changes nothing.
        const sums = sumBy(input.lines, (l) => `${l.sku}\u0000${l.location}`, (l) => sign * l.quantity)
        const deltas = sums.flatMap(([key, delta]) => {
          const [sku, location] = key.split("\u0000") as [string, string]
          return delta === 0 ? [] : [{ sku, location, delta }]
        })
        const batchId = randomUUID()
        if (deltas.length === 0) return { batchId, kind: input.kind, reason: input.reason, lines: [] } satisfies Adjustment
        const locked = yield* lockBySku([...new Set(deltas.map((d) => d.sku))])
        const unknown = deltas.find((d) => !locked.has(d.sku))
        if (unknown) return yield* new UnknownSku({ message: `unknown sku ${unknown.sku}`, sku: unknown.sku })
        const codes = [...new Set(deltas.map((d) => d.location))]
        const found = yield* sql<{ id: string; code: string }>`
          select id, code from inventory.locations where org_id = core.current_org_id() and code = any(${codes}::text[])`
        const locations = new Map(found.map((r) => [r.code, r.id]))
        const missing = codes.find((code) => !locations.has(code))
        if (missing) return yield* new UnknownLocation({ message: `unknown location ${missing}`, location: missing })
        const itemIds = deltas.map((d) => locked.get(d.sku)!.id)
        const locationIds = deltas.map((d) => locations.get(d.location)!)
        // Creates the missing stock rows (empty) and reads what each pair has free; the insert's
        // rows are invisible to this statement's select, hence the coalesce.
        const current = yield* sql<{ free: number }>`
          with d as (
            select * from unnest(${itemIds}::uuid[], ${locationIds}::uuid[]) with ordinality as d(item_id, location_id, n)
          ), created as (
            insert into inventory.stock (item_id, location_id) select item_id, location_id from d
            on conflict (item_id, location_id) do nothing
          )
          select coalesce(s.on_hand - s.reserved, 0) as free
            from d left join inventory.stock s using (item_id, location_id)
           order by d.n`
        for (const [i, d] of deltas.entries()) {
          const free = current[i]!.free
          if (free + d.delta < 0) {
            return yield* new InsufficientStock({
              message: `sku ${d.sku} at ${d.location}: ${free} available, cannot remove ${-d.delta}`,
              sku: d.sku,
              requested: -d.delta,
              available: free
            })
          }
        }
        const actor = yield* actorRef
        const applied = yield* sql<{ on_hand: number; available: number; crossed: ReadonlyArray<Crossing> }>`
          with d as (
            select * from unnest(${itemIds}::uuid[], ${locationIds}::uuid[], ${deltas.map((d) => d.delta)}::int[])
                     with ordinality as d(item_id, location_id, delta, n)
          ), stock_rows as (
            update inventory.stock s set on_hand = s.on_hand + d.delta, updated_at = now()
              from d where s.item_id = d.item_id and s.location_id = d.location_id
            returning s.item_id, s.location_id, s.on_hand, s.on_hand - s.reserved as available
          ), item_rows as (
            update inventory.items i
               set on_hand = i.on_hand + t.delta,
                   low_stock = i.on_hand + t.delta - i.reserved < i.reorder_threshold,
                   updated_at = now()
              from (select item_id, sum(delta)::int as delta from d group by item_id) t, inventory.items old
             where i.id = t.item_id and old.id = i.id
            returning ${sql.literal(CROSSED)}
          ), log as (
            insert into inventory.adjustments
              (batch_id, item_id, location_id, kind, quantity, on_hand_after, reason, actor_kind, actor_id)
            select ${batchId}, d.item_id, d.location_id, ${input.kind}, d.delta, s.on_hand, ${input.reason}, ${actor.kind}, ${actor.id}
              from d join stock_rows s using (item_id, location_id)
          )
          select s.on_hand, s.available,
                 (select coalesce(json_agg(c), '[]') from item_rows c where c.crossed) as crossed
            from d join stock_rows s using (item_id, location_id)
           order by d.n`
        yield* announce(applied[0]?.crossed ?? [])
        const lines = deltas.map((d, i) => ({
          sku: d.sku,
          location: d.location,
          quantity: d.delta,
          onHand: applied[i]!.on_hand,
          available: applied[i]!.available
        }))
        yield* emit(InventoryAdjusted, {
          batchId,
          kind: input.kind,
          reason: input.reason,
          reference: null,
          lines: lines.map(({ available: _, ...line }) => line)
        })
        yield* recordAudit({
          action: "inventory.adjust",
          targetType: "adjustment",
          targetId: batchId,
          details: { kind: input.kind, reason: input.reason, lines: deltas }
        })
        return { batchId, kind: input.kind, reason: input.reason, lines } satisfies Adjustment
      }).pipe(Effect.withSpan("StockLedger.adjust"))

    const onConnection = Effect.provideService(SqlClient.SqlClient, sql)
    return {
      reserve: (reference: string, lines: ReadonlyArray<StockLine>, options?: { readonly expiresAt?: Date }) =>
        onConnection(reserve(reference, lines, options)),
      release: (reference: string) => onConnection(release(reference)),
      commit: (reference: string) => onConnection(commit(reference)),
      expire: onConnection(expire),
      adjust: (input: CreateAdjustment) => onConnection(adjust(input)),
      syncLowStock: (itemIds: ReadonlyArray<string>) => onConnection(syncLowStock(itemIds))
    } as const
  })
}) {}

/** Core's StockReservations, as implemented by the ledger. */
export const layerStockReservations = Layer.effect(
  StockReservations,
  Effect.map(StockLedger, (ledger) => ({
    reserve: ledger.reserve,
    release: ledger.release,
    commit: ledger.commit
  }))
)
