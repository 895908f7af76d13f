import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { StockReservations } from "../../../core/Stock.ts"
import { inTenant } from "../../../core/Tenancy.ts"
import { inventory } from "../../../plugins/inventory/index.ts"
import { ItemsRepo } from "../../../plugins/inventory/Items.ts"
import { StockLedger } from "../../../plugins/inventory/Stock.ts"
import { testAppLayer } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"

const plugin = inventory.make({ expirySchedule: "* * * * *" })
const expireTask = plugin.tasks.find((t) => t.id === "inventory.expire_reservations")!

const appLayer = Layer.unwrapScoped(
  Effect.map(testDatabase(), (db) => testAppLayer({ databaseUrl: db.url, plugins: [plugin] }))
)

/** A fresh org with a location `main` (and `north`) and the given items in stock at `main`. */
const seedOrg = (items: ReadonlyArray<{ sku: string; onHand: number; threshold?: number }>) =>
  Effect.gen(function* () {
    const orgId = randomUUID()
    const repo = yield* ItemsRepo
    const ledger = yield* StockLedger
    yield* inTenant(
      orgId,
      Effect.gen(function* () {
        yield* repo.createLocation({ code: "main", name: "Main" })
        yield* repo.createLocation({ code: "north", name: "North" })
        for (const item of items) {
          yield* repo.create({ sku: item.sku, name: `Item ${item.sku}`, unit: "each", reorderThreshold: item.threshold ?? 0, attributes: {} })
        }
        const stocked = items.filter((i) => i.onHand > 0)
        if (stocked.length > 0) {
          yield* ledger.adjust({
            kind: "receive",
            reason: "opening stock",
            lines: stocked.map((i) => ({ sku: i.sku, location: "main", quantity: i.onHand }))
          })
        }
      })
    )
    return orgId
  })

const eventsOf = (orgId: string, type: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ payload: Record<string, unknown> }>`
      select payload from core.outbox_events where org_id = ${orgId} and type = ${type} order by occurred_at, id`.pipe(
      Effect.map((rows) => rows.map((r) => r.payload))
    )
  )

layer(appLayer, { excludeTestServices: true, timeout: "120 seconds" })("inventory", (it) => {
  it.effect("adjustments change stock and append to the log in one transaction; stock never goes negative", () =>
    Effect.gen(function* () {
      const orgId = yield* seedOrg([{ sku: "A-1", onHand: 10 }])
      const ledger = yield* StockLedger
      const repo = yield* ItemsRepo
      const shipped = yield* inTenant(
        orgId,
        ledger.adjust({ kind: "ship", reason: "sold at the counter", lines: [{ sku: "A-1", location: "main", quantity: 4 }] })
      )
      expect(shipped.lines).toEqual([{ sku: "A-1", location: "main", quantity: -4, onHand: 6, available: 6 }])

      const tooMany = yield* inTenant(
        orgId,
        ledger.adjust({
          kind: "correct",
          reason: "count",
          lines: [
            { sku: "A-1", location: "north", quantity: 3 },
            { sku: "A-1", location: "main", quantity: -7 }
          ]
        })
      ).pipe(Effect.flip)
      expect(tooMany).toMatchObject({ _tag: "InsufficientStock", sku: "A-1", requested: 7, available: 6 })
      expect(tooMany.message).toContain("A-1")

      const item = yield* inTenant(orgId, repo.get("A-1"))
      // The failed correction wrote nothing, not even its `north` line.
      expect(item).toMatchObject({ onHand: 6, reserved: 0, available: 6, locations: [{ location: "main", onHand: 6 }] })
      const log = yield* inTenant(orgId, repo.adjustmentLog("A-1", { limit: 10 }))
      expect(log.items.map((e) => [e.kind, e.quantity, e.onHandAfter, e.reason])).toEqual([
        ["ship", -4, 6, "sold at the counter"],
        ["receive", 10, 10, "opening stock"]
      ])
      const unknown = yield* inTenant(
        orgId,
        ledger.adjust({ kind: "receive", reason: "x", lines: [{ sku: "NOPE", location: "main", quantity: 1 }] })
      ).pipe(Effect.flip)
      expect(unknown).toMatchObject({ _tag: "UnknownSku", sku: "NOPE" })
      const badLocation = yield* inTenant(
        orgId,
        ledger.adjust({ kind: "receive", reason: "x", lines: [{ sku: "A-1", location: "attic", quantity: 1 }] })
      ).pipe(Effect.flip)
      expect(badLocation).toMatchObject({ _tag: "UnknownLocation", location: "attic" })
      expect(yield* eventsOf(orgId, "inventory.adjusted")).toHaveLength(2)
    })
  )

  it.effect("low stock fires once per crossing below the threshold, by adjustments and reservations", () =>
    Effect.gen(function* () {
      const orgId = yield* seedOrg([{ sku: "LOW", onHand: 10, threshold: 5 }])
      const ledger = yield* StockLedger
      const stock = yield* StockReservations
      const ship = (quantity: number) =>
        inTenant(orgId, ledger.adjust({ kind: "ship", reason: "sale", lines: [{ sku: "LOW", location: "main", quantity }] }))
      yield* ship(3) // 7: above
      yield* ship(3) // 4: crosses below
      yield* ship(1) // 3: still below, no event
      yield* inTenant(orgId, ledger.adjust({ kind: "receive", reason: "restock", lines: [{ sku: "LOW", location: "main", quantity: 10 }] })) // 13
      yield* inTenant(orgId, stock.reserve("order-1", [{ sku: "LOW", quantity: 9 }])) // available 4: crosses again
      yield* inTenant(orgId, stock.release("order-1")) // 13
      const events = yield* eventsOf(orgId, "inventory.low_stock")
      expect(events.map((e) => e.available)).toEqual([4, 4])
      expect(events[0]).toMatchObject({ sku: "LOW", reorderThreshold: 5 })
    })
  )

  it.effect("reserves all lines or none, across locations, then releases and commits", () =>
    Effect.gen(function* () {
      const orgId = yield* seedOrg([
        { sku: "R-1", onHand: 5 },
        { sku: "R-2", onHand: 2 }
      ])
      const ledger = yield* StockLedger
      const repo = yield* ItemsRepo
      const stock = yield* StockReservations
      yield* inTenant(orgId, ledger.adjust({ kind: "receive", reason: "x", lines: [{ sku: "R-1", location: "north", quantity: 3 }] }))

      const short = yield* inTenant(
        orgId,
        stock.reserve("order-a", [
          { sku: "R-1", quantity: 4 },
          { sku: "R-2", quantity: 3 }
        ])
      ).pipe(Effect.flip)
      expect(short).toMatchObject({ _tag: "InsufficientStock", sku: "R-2", requested: 3, available: 2 })
      const unknown = yield* inTenant(orgId, stock.reserve("order-a", [{ sku: "R-9", quantity: 1 }])).pipe(Effect.flip)
      expect(unknown).toMatchObject({ _tag: "UnknownSku", sku: "R-9" })
      expect((yield* inTenant(orgId, repo.get("R-1"))).reserved).toBe(0)

      // 7 of R-1 (two lines of one sku add up): 5 from main, 2 from north.
      yield* inTenant(
        orgId,
        stock.reserve("order-b", [
          { sku: "R-1", quantity: 6 },
          { sku: "R-1", quantity: 1 },
          { sku: "R-2", quantity: 2 }
        ])
      )
      const reserved = yield* inTenant(orgId, repo.get("R-1"))
      expect(reserved).toMatchObject({ onHand: 8, reserved: 7, available: 1 })
      expect(reserved.locations).toEqual([
        { location: "main", onHand: 5, reserved: 5, available: 0 },
        { location: "north", onHand: 3, reserved: 2, available: 1 }
      ])
      yield* inTenant(orgId, stock.commit("order-b"))
      const shipped = yield* inTenant(orgId, repo.get("R-1"))
      expect(shipped).toMatchObject({ onHand: 1, reserved: 0, available: 1 })
      const log = yield* inTenant(orgId, repo.adjustmentLog("R-1", { limit: 10 }))
      const committed = log.items.filter((e) => e.reference === "order-b").map((e) => [e.location, e.quantity])
      expect(committed.sort()).toEqual([
        ["main", -5],
        ["north", -2]
      ])
      // Committing or releasing again finds nothing active.
      yield* inTenant(orgId, stock.release("order-b"))
      expect((yield* inTenant(orgId, repo.get("R-2"))).onHand).toBe(0)

      yield* inTenant(orgId, stock.reserve("order-c", [{ sku: "R-1", quantity: 1 }]))
      yield* inTenant(orgId, stock.release("order-c"))
      expect(yield* inTenant(orgId, repo.get("R-1"))).toMatchObject({ onHand: 1, reserved: 0, available: 1 })
      const lines = yield* inTenant(orgId, repo.reservations("order-c"))
      expect(lines.lines.map((l) => l.status)).toEqual(["released"])
    })
  )

  it.effect("the expiry task releases reservations past their expiry, in every org", () =>
    Effect.gen(function* () {
      const first = yield* seedOrg([{ sku: "E-1", onHand: 5 }])
      const second = yield* seedOrg([{ sku: "E-1", onHand: 5 }])
      const stock = yield* StockReservations
      const repo = yield* ItemsRepo
      const past = new Date(Date.now() - 1000)
      yield* inTenant(first, stock.reserve("cart-1", [{ sku: "E-1", quantity: 2 }], { expiresAt: past }))
      yield* inTenant(second, stock.reserve("cart-2", [{ sku: "E-1", quantity: 3 }], { expiresAt: past }))
      yield* inTenant(second, stock.reserve("cart-3", [{ sku: "E-1", quantity: 1 }], { expiresAt: new Date(Date.now() + 3_600_000) }))
      yield* expireTask.handler({})
      expect((yield* inTenant(first, repo.get("E-1"))).reserved).toBe(0)
      expect((yield* inTenant(second, repo.get("E-1"))).reserved).toBe(1)
    })
  )

  it.effect("soft delete hides an item from lists until it is restored; reserved items stay", () =>
    Effect.gen(function* () {
      const orgId = yield* seedOrg([
        { sku: "D-1", onHand: 0 },
        { sku: "D-2", onHand: 4 }
      ])
      const repo = yield* ItemsRepo
      const stock = yield* StockReservations
      const list = (includeDeleted: boolean) =>
        inTenant(orgId, repo.list({ lowStock: false, includeDeleted, sort: "sku", limit: 50 })).pipe(
          Effect.map((page) => page.items.map((i) => i.sku))
        )
      yield* inTenant(orgId, repo.remove("D-1"))
      expect(yield* list(false)).toEqual(["D-2"])
      expect(yield* list(true)).toEqual(["D-1", "D-2"])
      const taken = yield* inTenant(orgId, repo.create({ sku: "D-1", name: "again", unit: "each", reorderThreshold: 0, attributes: {} })).pipe(
        Effect.flip
      )
      expect(taken).toMatchObject({ _tag: "SkuTaken", deleted: true })
      const reserveDeleted = yield* inTenant(orgId, stock.reserve("o", [{ sku: "D-1", quantity: 1 }])).pipe(Effect.flip)
      expect(reserveDeleted._tag).toBe("UnknownSku")
      const restored = yield* inTenant(orgId, repo.restore("D-1"))
      expect(restored.deletedAt).toBeNull()
      expect(yield* list(false)).toEqual(["D-1", "D-2"])
      expect((yield* inTenant(orgId, repo.restore("D-1")).pipe(Effect.flip))._tag).toBe("NotFound")

      yield* inTenant(orgId, stock.reserve("o-2", [{ sku: "D-2", quantity: 1 }]))
      const reserved = yield* inTenant(orgId, repo.remove("D-2")).pipe(Effect.flip)
      expect(reserved).toMatchObject({ _tag: "ItemReserved", reserved: 1 })
    })
  )

  it.effect("lists filter by text, location and low stock, sort, and page without gaps or repeats", () =>
    Effect.gen(function* () {
      const skus = Array.from({ length: 57 }, (_, i) => ({ sku: `L-${String(i).padStart(3, "0")}`, onHand: i % 10, threshold: 3 }))
      const orgId = yield* seedOrg(skus)
      const repo = yield* ItemsRepo
      const ledger = yield* StockLedger
      yield* inTenant(orgId, ledger.adjust({ kind: "receive", reason: "x", lines: [{ sku: "L-005", location: "north", quantity: 1 }] }))
      const all = (sort: "sku" | "-available" | "-createdAt" | "name") =>
        Effect.gen(function* () {
          const seen: Array<string> = []
          let cursor: string | undefined = undefined
          do {
            const page: { items: ReadonlyArray<{ sku: string }>; nextCursor: string | null } = yield* inTenant(
              orgId,
              repo.list({ lowStock: false, includeDeleted: false, sort, limit: 10, ...(cursor ? { cursor } : {}) })
            )
            seen.push(...page.items.map((i) => i.sku))
            cursor = page.nextCursor ?? undefined
          } while (cursor)
          return seen
        })
      const bySku = yield* all("sku")
      expect(bySku).toEqual(skus.map((s) => s.sku))
      for (const sort of ["-available", "-createdAt", "name"] as const) {
        const seen = yield* all(sort)
        expect(new Set(seen).size).toBe(57)
        expect(seen).toHaveLength(57)
      }
      const byAvailable = yield* inTenant(orgId, repo.list({ lowStock: false, includeDeleted: false, sort: "-available", limit: 3 }))
      expect(byAvailable.items.map((i) => i.available)).toEqual([9, 9, 9])

      const low = yield* inTenant(orgId, repo.list({ lowStock: true, includeDeleted: false, sort: "sku", limit: 100 }))
      expect(low.items.every((i) => i.available < 3)).toBe(true)
      expect(low.items).toHaveLength(skus.filter((s) => s.onHand < 3).length)
      const text = yield* inTenant(orgId, repo.list({ q: "l-01", lowStock: false, includeDeleted: false, sort: "sku", limit: 100 }))
      expect(text.items.map((i) => i.sku)).toEqual(Array.from({ length: 10 }, (_, i) => `L-01${i}`))
      const north = yield* inTenant(orgId, repo.list({ location: "north", lowStock: false, includeDeleted: false, sort: "sku", limit: 100 }))
      expect(north.items.map((i) => i.sku)).toEqual(["L-005"])
      const wildcard = yield* inTenant(orgId, repo.list({ q: "%", lowStock: false, includeDeleted: false, sort: "sku", limit: 100 }))
      expect(wildcard.items).toEqual([])
      const infix = yield* inTenant(orgId, repo.list({ q: "tem", lowStock: false, includeDeleted: false, sort: "sku", limit: 100 }))
      expect(infix.items).toEqual([])
      const foreignCursor = yield* inTenant(
        orgId,
        repo.list({ lowStock: false, includeDeleted: false, sort: "name", limit: 10, cursor: "garbage" })
      ).pipe(Effect.either)
      expect(Either.isLeft(foreignCursor) && foreignCursor.left._tag).toBe("BadRequest")
    })
  )

  it.effect("orgs see only their own items, and may use the same skus", () =>
    Effect.gen(function* () {
      const first = yield* seedOrg([{ sku: "SAME", onHand: 3 }])
      const second = yield* seedOrg([{ sku: "SAME", onHand: 8 }, { sku: "ONLY-2", onHand: 1 }])
      const repo = yield* ItemsRepo
      const stock = yield* StockReservations
      expect((yield* inTenant(first, repo.get("SAME"))).onHand).toBe(3)
      expect((yield* inTenant(first, repo.get("ONLY-2")).pipe(Effect.flip))._tag).toBe("NotFound")
      expect((yield* inTenant(first, stock.reserve("x", [{ sku: "ONLY-2", quantity: 1 }])).pipe(Effect.flip))._tag).toBe("UnknownSku")
      const page = yield* inTenant(second, repo.list({ lowStock: false, includeDeleted: false, sort: "sku", limit: 10 }))
      expect(page.items.map((i) => [i.sku, i.onHand])).toEqual([
        ["ONLY-2", 1],
        ["SAME", 8]
      ])
      // Row-level security holds even for a query without an org filter.
      const sql = yield* SqlClient.SqlClient
      const visible = yield* inTenant(first, sql<{ n: number }>`select count(*)::int as n from inventory.items`)
      expect(visible[0]!.n).toBe(1)
    })
  )
})
