import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either } from "effect"
import { randomUUID } from "node:crypto"
import { inTenant } from "../../../core/Tenancy.ts"
import { ItemsRepo } from "../../../plugins/inventory/Items.ts"
import { NEXT_STATUSES, OrderStatus, type OrderStatus as Status } from "../../../plugins/orders/Domain.ts"
import { OrdersService } from "../../../plugins/orders/Orders.ts"
import { countRows, orderInput, ordersAppLayer, seedStock } from "./fixtures.ts"

const staff = { kind: "user", id: "staff-1" }

const eventTypes = (orgId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ type: string }>`select type from core.outbox_events where org_id = ${orgId} and type like 'orders.%' order by occurred_at, id`.pipe(
      Effect.map((rows) => rows.map((r) => r.type))
    )
  )

layer(ordersAppLayer(), { excludeTestServices: true, timeout: "120 seconds" })("orders", (it) => {
  it.effect("50 concurrent orders for the last 10 units: exactly 10 are placed, the rest refused with nothing written", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "LAST", main: 6, north: 4 }])
      const service = yield* OrdersService
      const results = yield* Effect.all(
        Array.from({ length: 50 }, (_, i) =>
          inTenant(orgId, service.place("website", orderInput([{ sku: "LAST", qty: 1 }], { externalId: `race-${i}` }), staff)).pipe(
            Effect.either
          )
        ),
        { concurrency: "unbounded" }
      )
      const placed = results.filter(Either.isRight)
      const refused = results.filter(Either.isLeft).map((r) => r.left)
      expect(placed).toHaveLength(10)
      expect(refused).toHaveLength(40)
      expect(refused.every((e) => e._tag === "InsufficientStock")).toBe(true)
      const item = yield* inTenant(orgId, (yield* ItemsRepo).get("LAST"))
      expect(item).toMatchObject({ onHand: 10, reserved: 10, available: 0 })
      expect(yield* countRows(orgId, "orders.orders")).toBe(10)
      expect(yield* countRows(orgId, "orders.order_items")).toBe(10)
      expect(yield* countRows(orgId, "orders.status_history")).toBe(10)
      expect((yield* eventTypes(orgId)).filter((t) => t === "orders.created")).toHaveLength(10)
    })
  )

  it.effect("placement is all or nothing: one short line refuses the whole order", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([
        { sku: "A", main: 5 },
        { sku: "B", main: 1 }
      ])
      const service = yield* OrdersService
      const items = yield* ItemsRepo
      const short = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "A", qty: 2 }, { sku: "B", qty: 2 }]), staff)).pipe(
        Effect.flip
      )
      expect(short).toMatchObject({ _tag: "InsufficientStock", sku: "B", requested: 2, available: 1 })
      const unknown = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "A", qty: 1 }, { sku: "ZZZ", qty: 1 }]), staff)).pipe(
        Effect.flip
      )
      expect(unknown).toMatchObject({ _tag: "UnknownSku", sku: "ZZZ" })
      expect((yield* inTenant(orgId, items.get("A"))).reserved).toBe(0)
      expect(yield* countRows(orgId, "orders.orders")).toBe(0)
      expect(yield* countRows(orgId, "inventory.reservations")).toBe(0)
      expect(yield* eventTypes(orgId)).toEqual([])

      const badTotal = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "A", qty: 2, price: 999 }], { total: 2000 }), staff)).pipe(
        Effect.flip
      )
      expect(badTotal).toMatchObject({ _tag: "BadRequest", field: "total" })
      expect(badTotal.message).toContain("1998")

      const order = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "A", qty: 2, price: 999 }, { sku: "B", qty: 1, price: 1 }], { total: 1999, externalId: "W-1" }), staff))
      expect(order).toMatchObject({ status: "PLACED", total: 1999, itemCount: 2, currency: "EUR", externalId: "W-1" })
      expect(order.items.map((i) => i.lineTotal)).toEqual([1998, 1])
      // The placement's answer is built from its input; it must be what was stored.
      expect(yield* inTenant(orgId, service.get(order.id))).toEqual(order)
      const again = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "A", qty: 1 }], { externalId: "W-1" }), staff)).pipe(
        Effect.flip
      )
      expect(again).toMatchObject({ _tag: "DuplicateOrder", orderId: order.id })
      // The same external id on another channel is another order.
      yield* inTenant(orgId, service.place("amazon", orderInput([{ sku: "A", qty: 1 }], { externalId: "W-1" }), staff))
      expect((yield* inTenant(orgId, items.get("A"))).reserved).toBe(3)
    })
  )

  it.effect("every transition: legal ones move the order and keep history, illegal ones are 409s naming both states", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "T", main: 1000 }])
      const service = yield* OrdersService
      const statuses = OrderStatus.literals
      // Reaches `status` by the shortest legal path from PLACED.
      const pathTo: Record<Status, ReadonlyArray<Status>> = {
        PLACED: [],
        CONFIRMED: ["CONFIRMED"],
        SHIPPED: ["CONFIRMED", "SHIPPED"],
        DELIVERED: ["CONFIRMED", "SHIPPED", "DELIVERED"],
        CANCELLED: ["CANCELLED"]
      }
      for (const from of statuses) {
        for (const to of statuses) {
          const order = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "T", qty: 1 }]), staff))
          for (const step of pathTo[from]) yield* inTenant(orgId, service.transition(order.id, step, staff, null))
          const result = yield* inTenant(orgId, service.transition(order.id, to, staff, `to ${to}`)).pipe(Effect.either)
          if (NEXT_STATUSES[from].includes(to)) {
            expect(Either.isRight(result), `${from} -> ${to} is legal`).toBe(true)
            const moved = Either.getOrThrow(result)
            expect(moved.status).toBe(to)
            expect(moved.history.map((h) => h.to)).toEqual(["PLACED", ...pathTo[from], to])
            expect(moved.history.at(-1)).toMatchObject({ from, to, note: `to ${to}`, actor: staff })
          } else {
            expect(Either.isLeft(result), `${from} -> ${to} is illegal`).toBe(true)
            const error = Either.getLeft(result).pipe((o) => (o._tag === "Some" ? o.value : undefined))
            expect(error).toMatchObject({ _tag: "IllegalTransition", from, to })
            expect(error!.message).toContain(from)
            expect(error!.message).toContain(to)
            const unchanged = yield* inTenant(orgId, service.get(order.id))
            expect(unchanged.status).toBe(from)
            expect(unchanged.history).toHaveLength(1 + pathTo[from].length)
          }
        }
      }
      const missing = yield* inTenant(orgId, service.transition(randomUUID(), "CONFIRMED", staff, null)).pipe(Effect.flip)
      expect(missing._tag).toBe("NotFound")
    })
  )

  it.effect("cancelling releases the stock, shipping commits it; both are events and audited", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "S", main: 10 }])
      const service = yield* OrdersService
      const items = yield* ItemsRepo
      const sql = yield* SqlClient.SqlClient
      const cancelled = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "S", qty: 3 }]), staff))
      const shipped = yield* inTenant(orgId, service.place("website", orderInput([{ sku: "S", qty: 4 }]), staff))
      expect(yield* inTenant(orgId, items.get("S"))).toMatchObject({ onHand: 10, reserved: 7 })
      yield* inTenant(orgId, service.transition(cancelled.id, "CANCELLED", staff, "customer changed their mind"))
      expect(yield* inTenant(orgId, items.get("S"))).toMatchObject({ onHand: 10, reserved: 4 })
      yield* inTenant(orgId, service.transition(shipped.id, "CONFIRMED", staff, null))
      yield* inTenant(orgId, service.transition(shipped.id, "SHIPPED", staff, null))
      expect(yield* inTenant(orgId, items.get("S"))).toMatchObject({ onHand: 6, reserved: 0, available: 6 })
      const log = yield* inTenant(orgId, items.adjustmentLog("S", { limit: 5 }))
      expect(log.items[0]).toMatchObject({ kind: "ship", quantity: -4, reference: shipped.id })
      // Events of one transaction share their time, so compare them unordered.
      expect([...(yield* eventTypes(orgId))].sort()).toEqual([
        "orders.cancelled",
        "orders.created",
        "orders.created",
        "orders.status_changed",
        "orders.status_changed",
        "orders.status_changed"
      ])
      const audit = yield* sql<{ target_id: string; details: { from: string; to: string } }>`
        select target_id, details from core.audit_log where org_id = ${orgId} and action = 'orders.status_changed' order by id`
      expect(audit.map((a) => [a.target_id, a.details.from, a.details.to])).toEqual([
        [cancelled.id, "PLACED", "CANCELLED"],
        [shipped.id, "PLACED", "CONFIRMED"],
        [shipped.id, "CONFIRMED", "SHIPPED"]
      ])
    })
  )

  it.effect("orgs never see each other's orders or stock", () =>
    Effect.gen(function* () {
      const first = yield* seedStock([{ sku: "X", main: 5 }])
      const second = yield* seedStock([{ sku: "Y", main: 5 }])
      const service = yield* OrdersService
      const order = yield* inTenant(first, service.place("website", orderInput([{ sku: "X", qty: 1 }]), staff))
      expect((yield* inTenant(second, service.get(order.id)).pipe(Effect.flip))._tag).toBe("NotFound")
      expect((yield* inTenant(second, service.transition(order.id, "CANCELLED", staff, null)).pipe(Effect.flip))._tag).toBe("NotFound")
      const page = yield* inTenant(second, service.list({ sort: "-createdAt", limit: 50 }))
      expect(page.items).toEqual([])
      // The other org's sku is unknown here.
      const foreign = yield* inTenant(second, service.place("website", orderInput([{ sku: "X", qty: 1 }]), staff)).pipe(Effect.flip)
      expect(foreign._tag).toBe("UnknownSku")
    })
  )
})
