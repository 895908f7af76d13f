import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Fiber } from "effect"
import { inTenant } from "../../../core/Tenancy.ts"
import type { ListOrdersParams } from "../../../plugins/orders/Domain.ts"
import { OrdersService } from "../../../plugins/orders/Orders.ts"
import { orderInput, ordersAppLayer, seedStock } from "./fixtures.ts"
import { SEED_SKUS, seedOrders } from "./seed.ts"

const ROWS = 3_000
const newest = new Date(Date.now() - 60_000)
const staff = { kind: "user", id: "staff-1" }

/** The org's order ids in the given SQL order, straight from the table: what paging must reproduce. */
const snapshot = (orgId: string, where: string, orderBy: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    inTenant(orgId, sql<{ id: string }>`select id from orders.orders where ${sql.literal(where)} order by ${sql.literal(orderBy)}`).pipe(
      Effect.map((rows) => rows.map((r) => r.id))
    )
  )

layer(ordersAppLayer(), { excludeTestServices: true, timeout: "120 seconds" })("order lists", (it) => {
  const setup = Effect.gen(function* () {
    const orgId = yield* seedStock([{ sku: "NEW", main: 10_000 }])
    yield* inTenant(orgId, seedOrders(ROWS, newest))
    return orgId
  })

  /** Pages through with `params` while another fiber keeps placing orders; returns every id seen. */
  const pageWhileInserting = (orgId: string, params: Omit<ListOrdersParams, "limit" | "cursor">) =>
    Effect.gen(function* () {
      const service = yield* OrdersService
      let placed = 0
      const inserter = yield* Effect.fork(
        Effect.forever(
          // Suspended: each order needs an external id of its own.
          Effect.suspend(() => inTenant(orgId, service.place("amazon", orderInput([{ sku: "NEW", qty: 1, price: 5000 }]), staff))).pipe(
            Effect.tap(() => placed++),
            Effect.zipRight(Effect.sleep(2))
          )
        )
      )
      const seen: Array<string> = []
      let cursor: string | undefined
      do {
        // At least one order lands between consecutive pages, however the fibers are scheduled.
        if (cursor !== undefined) {
          const before = placed
          while (placed === before) yield* Effect.sleep(1)
        }
        const page = yield* inTenant(orgId, service.list({ ...params, limit: 97, ...(cursor ? { cursor } : {}) }))
        seen.push(...page.items.map((o) => o.id))
        cursor = page.nextCursor ?? undefined
      } while (cursor)
      yield* Fiber.interrupt(inserter)
      expect(placed, "orders placed while paging").toBeGreaterThan(0)
      return seen
    })

  it.effect("pages newest first without gaps or repeats while orders are being placed", () =>
    Effect.gen(function* () {
      const orgId = yield* setup
      const expected = yield* snapshot(orgId, "true", "created_at desc, id desc")
      const seen = yield* pageWhileInserting(orgId, { sort: "-createdAt" })
      expect(expected).toHaveLength(ROWS)
      // Orders placed meanwhile are newer than the page being read, so only one placed before
      // the first page can show up (at the top); none appears later or twice.
      const fresh = seen.slice(0, seen.length - expected.length)
      expect(fresh.every((id) => !expected.includes(id))).toBe(true)
      expect(seen.slice(fresh.length)).toEqual(expected)
    })
  )

  it.effect("filters by status and sorts by total; channel and date range oldest first; both stable under inserts", () =>
    Effect.gen(function* () {
      const orgId = yield* setup
      const byTotal = yield* snapshot(orgId, "status = 'PLACED'", "total desc, id desc")
      const seenByTotal = yield* pageWhileInserting(orgId, { status: "PLACED", sort: "-total" })
      expect(new Set(seenByTotal).size).toBe(seenByTotal.length)
      expect(seenByTotal.filter((id) => byTotal.includes(id))).toEqual(byTotal)
      expect(byTotal.length).toBeGreaterThan(500)

      const from = new Date(newest.getTime() - 1_000_000)
      const to = new Date(newest.getTime() - 200_000)
      const window = yield* snapshot(
        orgId,
        `channel = 'blinkit' and created_at >= '${from.toISOString()}' and created_at < '${to.toISOString()}'`,
        "created_at, id"
      )
      const seenWindow = yield* pageWhileInserting(orgId, {
        channel: "blinkit",
        from: DateTime.unsafeFromDate(from),
        to: DateTime.unsafeFromDate(to),
        sort: "createdAt"
      })
      expect(seenWindow).toEqual(window)
      expect(window.length).toBeGreaterThan(100)
    })
  )

  it.effect("free text: every word starts a word of the customer's name or email, the external id or a sku", () =>
    Effect.gen(function* () {
      const orgId = yield* setup
      const service = yield* OrdersService
      const search = (q: string) =>
        inTenant(orgId, service.list({ q, sort: "-createdAt", limit: 200 })).pipe(Effect.map((page) => page.items))
      const ids = (q: string) => Effect.map(search(q), (items) => items.map((o) => o.externalId))
      expect(yield* ids("CUSTOMER 1234")).toEqual(["SEED-1234"])
      expect(yield* ids("c2345@example.com")).toEqual(["SEED-2345"])
      expect(yield* ids("seed-2999")).toEqual(["SEED-2999"])
      expect(yield* ids("cust 2998")).toEqual(["SEED-2998"])
      const bySku = yield* search("p17x")
      expect(bySku).toHaveLength(ROWS / SEED_SKUS)
      expect(bySku.every((o) => Number(o.externalId.split("-")[1]) % SEED_SKUS === 17)).toBe(true)
      // Words match from their start, not in their middle.
      expect(yield* search("ustomer")).toEqual([])
      expect(yield* search("nobody")).toEqual([])
      expect(yield* search("%_")).toEqual([])
    })
  )

  it.effect("a cursor from another sort, or not from this API, is a 400 naming the cursor", () =>
    Effect.gen(function* () {
      const orgId = yield* setup
      const service = yield* OrdersService
      const first = yield* inTenant(orgId, service.list({ sort: "-createdAt", limit: 5 }))
      const otherSort = yield* inTenant(orgId, service.list({ sort: "total", limit: 5, cursor: first.nextCursor! })).pipe(Effect.flip)
      expect(otherSort).toMatchObject({ _tag: "BadRequest", field: "cursor" })
      const forged = Buffer.from(JSON.stringify(["-createdAt", "yesterday", "x"])).toString("base64url")
      const bad = yield* inTenant(orgId, service.list({ sort: "-createdAt", limit: 5, cursor: forged })).pipe(Effect.flip)
      expect(bad).toMatchObject({ _tag: "BadRequest", field: "cursor" })
    })
  )
})
