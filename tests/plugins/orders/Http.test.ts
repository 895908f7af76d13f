import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { IdentityOptions } from "../../../plugins/identity/Domain.ts"
import { identity } from "../../../plugins/identity/index.ts"
import { orders } from "../../../plugins/orders/index.ts"
import { baseUrl, request, testAppLayer } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"
import { createTenant, type TestTenant } from "../../support/tenants.ts"
import { gatePlugin, inventoryPlugin, switchedOff } from "./fixtures.ts"

const identityPlugin = identity.make(Schema.decodeUnknownSync(IdentityOptions)({}))

const appLayer = Layer.unwrapScoped(
  Effect.map(testDatabase(), (db) =>
    testAppLayer({ databaseUrl: db.url, plugins: [identityPlugin, inventoryPlugin, orders.make({ channels: [] }), gatePlugin],
      http: true })
  )
)

/** A tenant with an item `sku` of `stock` units at location `main`, stocked over HTTP. */
const stockedTenant = (base: string, stock: Record<string, number>) =>
  Effect.gen(function* () {
    const tenant = yield* createTenant(base)
    const call = (method: string, path: string, body?: unknown) => request(base, method, path, body, tenant.headers)
    expect((yield* call("POST", "/api/v1/inventory/locations", { code: "main", name: "Main" })).status).toBe(201)
    for (const [sku, onHand] of Object.entries(stock)) {
      expect((yield* call("POST", "/api/v1/inventory/items", { sku, name: `Item ${sku}` })).status).toBe(201)
      if (onHand > 0) {
        const received = yield* call("POST", "/api/v1/inventory/adjustments", {
          kind: "receive",
          reason: "opening stock",
          lines: [{ sku, location: "main", quantity: onHand }]
        })
        expect(received.status).toBe(201)
      }
    }
    return tenant
  })

const order = (overrides: Record<string, unknown> = {}) => ({
  channel: "website",
  externalId: `W-${Math.random().toString(36).slice(2)}`,
  customer: { name: "Grace Hopper", phone: "+1 202 555 0100", email: "grace@example.com" },
  items: [{ sku: "MUG", name: "Mug", qty: 2, price: 1299 }],
  currency: "USD",
  ...overrides
})

layer(appLayer, { excludeTestServices: true, timeout: "120 seconds" })("orders over HTTP", (it) => {
  const setup = (stock: Record<string, number> = { MUG: 10, CUP: 1 }) =>
    Effect.gen(function* () {
      const base = yield* baseUrl
      const tenant = yield* stockedTenant(base, stock)
      const call = (method: string, path: string, body?: unknown, as: TestTenant = tenant) =>
        request(base, method, path, body, as.headers)
      return { base, tenant, call }
    })

  it.effect("places an order with server-computed totals, reads it with items and history, moves it along", () =>
    Effect.gen(function* () {
      const { call } = yield* setup()
      const created = yield* call("POST", "/api/v1/orders", order({ externalId: "W-100", total: 2598 }))
      expect(created.status).toBe(201)
      expect(created.json).toMatchObject({ status: "PLACED", total: 2598, currency: "USD", itemCount: 1, channel: "website" })
      const id = created.json.id as string
      const confirmed = yield* call("POST", `/api/v1/orders/${id}/status`, { status: "CONFIRMED", note: "paid" })
      expect(confirmed.status).toBe(200)
      const illegal = yield* call("POST", `/api/v1/orders/${id}/status`, { status: "DELIVERED" })
      expect(illegal.status).toBe(409)
      expect(illegal.json).toMatchObject({ _tag: "IllegalTransition", from: "CONFIRMED", to: "DELIVERED" })
      expect(illegal.json.message).toMatch(/CONFIRMED.*DELIVERED/)
      const fetched = yield* call("GET", `/api/v1/orders/${id}`)
      expect(fetched.json.items).toEqual([{ sku: "MUG", name: "Mug", qty: 2, price: 1299, lineTotal: 2598 }])
      expect(fetched.json.history.map((h: { from: string | null; to: string; note: string | null }) => [h.from, h.to, h.note])).toEqual([
        [null, "PLACED", null],
        ["PLACED", "CONFIRMED", "paid"]
      ])
      expect(fetched.json.history[1].actor.kind).toBe("api_key")
      const duplicate = yield* call("POST", "/api/v1/orders", order({ externalId: "W-100" }))
      expect(duplicate.status).toBe(409)
      expect(duplicate.json).toMatchObject({ _tag: "DuplicateOrder", orderId: id, externalId: "W-100" })
      const mugs = yield* call("GET", "/api/v1/inventory/items/MUG")
      expect(mugs.json).toMatchObject({ onHand: 10, reserved: 2, available: 8 })

      // The org's kill switch refuses new orders; status changes go on.
      switchedOff.add("orders.placement")
      const refused = yield* call("POST", "/api/v1/orders", order()).pipe(
        Effect.ensuring(Effect.sync(() => switchedOff.delete("orders.placement")))
      )
      expect(refused.status).toBe(503)
      expect(refused.json).toMatchObject({ _tag: "ServiceUnavailable", flag: "orders.placement" })
      expect((yield* call("GET", "/api/v1/inventory/items/MUG")).json.reserved).toBe(2)
    })
  )

  it.effect("bad input is a 400 naming the field; stock problems are 409s naming the sku; nothing is written", () =>
    Effect.gen(function* () {
      const { call } = yield* setup()
      const bad = (body: unknown) => call("POST", "/api/v1/orders", body)
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [order({ items: [{ sku: "MUG", name: "Mug", qty: -1, price: 100 }] }), "qty"],
        [order({ items: [{ sku: "MUG", name: "Mug", qty: 1, price: 1.5 }] }), "price"],
        [order({ currency: "XYZ" }), "currency"],
        [order({ currency: "usd" }), "currency"],
        [order({ items: [] }), "items"],
        [order({ items: Array.from({ length: 101 }, () => ({ sku: "MUG", name: "Mug", qty: 1, price: 1 })) }), "items"],
        [order({ customer: { name: "No Phone" } }), "phone"],
        [order({ customer: { name: "X", phone: "+1 202 555 0100", email: "not-an-email" } }), "email"],
        [order({ channel: "Not A Channel" }), "channel"]
      ]
      for (const [body, field] of cases) {
        const response = yield* bad(body)
        expect(response.status, JSON.stringify(body).slice(0, 120)).toBe(400)
        expect(JSON.stringify(response.json.issues ?? response.json)).toContain(field)
      }
      const mismatch = yield* bad(order({ total: 1 }))
      expect(mismatch.status).toBe(400)
      expect(mismatch.json).toMatchObject({ _tag: "BadRequest", field: "total" })
      expect(mismatch.json.message).toContain("2598")

      const unknown = yield* bad(order({ items: [{ sku: "NOPE", name: "?", qty: 1, price: 1 }] }))
      expect(unknown.status).toBe(409)
      expect(unknown.json).toMatchObject({ _tag: "UnknownSku", sku: "NOPE" })
      const short = yield* bad(order({ items: [{ sku: "MUG", name: "Mug", qty: 1, price: 1 }, { sku: "CUP", name: "Cup", qty: 2, price: 1 }] }))
      expect(short.status).toBe(409)
      expect(short.json).toMatchObject({ _tag: "InsufficientStock", sku: "CUP", requested: 2, available: 1 })
      const list = yield* call("GET", "/api/v1/orders")
      expect(list.json.items).toEqual([])
      expect((yield* call("GET", "/api/v1/inventory/items/MUG")).json.reserved).toBe(0)
      const badQuery = yield* call("GET", "/api/v1/orders?status=LOST&limit=1000")
      expect(badQuery.status).toBe(400)
    })
  )

  it.effect("lists filter, search and page; other orgs and missing permissions see nothing", () =>
    Effect.gen(function* () {
      const { base, call, tenant } = yield* setup({ MUG: 100 })
      for (let i = 0; i < 7; i++) {
        const placed = yield* call("POST", "/api/v1/orders", order({ channel: i % 2 ? "amazon" : "website", externalId: `L-${i}` }))
        expect(placed.status).toBe(201)
      }
      const amazon = yield* call("GET", "/api/v1/orders?channel=amazon&sort=-total")
      expect(amazon.json.items.map((o: { externalId: string }) => o.externalId).sort()).toEqual(["L-1", "L-3", "L-5"])
      const search = yield* call("GET", "/api/v1/orders?q=l-4")
      expect(search.json.items.map((o: { externalId: string }) => o.externalId)).toEqual(["L-4"])
      const seen: Array<string> = []
      let path = "/api/v1/orders?limit=3"
      for (;;) {
        const page = yield* call("GET", path)
        seen.push(...page.json.items.map((o: { externalId: string }) => o.externalId))
        if (page.json.nextCursor === null) break
        path = `/api/v1/orders?limit=3&cursor=${page.json.nextCursor}`
      }
      expect(seen.sort()).toEqual(["L-0", "L-1", "L-2", "L-3", "L-4", "L-5", "L-6"])

      const other = yield* createTenant(base)
      const foreign = yield* call("GET", "/api/v1/orders", undefined, other)
      expect(foreign.json.items).toEqual([])
      const oneId = amazon.json.items[0].id as string
      expect((yield* call("GET", `/api/v1/orders/${oneId}`, undefined, other)).status).toBe(404)

      const reader = yield* createTenant(base, { permissions: ["orders:read"] })
      const denied = yield* call("POST", "/api/v1/orders", order(), reader)
      expect(denied.status).toBe(403)
      expect(denied.json.permission).toBe("orders:write")
      const operator = yield* request(base, "GET", "/api/v1/orders")
      expect(operator.status).toBe(403)
      expect(tenant.orgId).not.toBe(other.orgId)
    })
  )

  it.effect("every route documents its permission in the OpenAPI document", () =>
    Effect.gen(function* () {
      const base = yield* baseUrl
      const spec = (yield* request(base, "GET", "/openapi.json")).json
      const ours = Object.entries(spec.paths as Record<string, Record<string, Record<string, unknown>>>).filter(
        ([path]) => path.startsWith("/api/v1/orders") || path.startsWith("/api/v1/inventory")
      )
      expect(ours.length).toBeGreaterThan(10)
      for (const [path, methods] of ours) {
        for (const [method, operation] of Object.entries(methods)) {
          expect(operation["x-required-permission"], `${method} ${path}`).toMatch(/^(orders|inventory):(read|write)$/)
        }
      }
    })
  )
})
