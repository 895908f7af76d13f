import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { IdentityOptions } from "../../../plugins/identity/Domain.ts"
import { identity } from "../../../plugins/identity/index.ts"
import { inventory } from "../../../plugins/inventory/index.ts"
import { baseUrl, request, testAppLayer } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"
import { createTenant } from "../../support/tenants.ts"

const appLayer = Layer.unwrapScoped(
  Effect.map(testDatabase(), (db) =>
    testAppLayer({
      databaseUrl: db.url,
      plugins: [identity.make(Schema.decodeUnknownSync(IdentityOptions)({})), inventory.make({ expirySchedule: "* * * * *" })],
      http: true
    })
  )
)

layer(appLayer, { excludeTestServices: true, timeout: "120 seconds" })("inventory over HTTP", (it) => {
  const setup = Effect.gen(function* () {
    const base = yield* baseUrl
    const tenant = yield* createTenant(base)
    const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = tenant.headers) =>
      request(base, method, `/api/v1/inventory${path}`, body, headers)
    return { base, tenant, call }
  })

  it.effect("items, locations and adjustments; stock never goes negative; the log keeps who and why", () =>
    Effect.gen(function* () {
      const { call } = yield* setup
      expect((yield* call("POST", "/locations", { code: "main", name: "Main" })).status).toBe(201)
      expect((yield* call("POST", "/locations", { code: "main", name: "Again" })).status).toBe(409)
      const created = yield* call("POST", "/items", { sku: "BOLT-8", name: "Bolt M8", unit: "box", reorderThreshold: 5, attributes: { size: 8 } })
      expect(created.status).toBe(201)
      expect(created.json).toMatchObject({ sku: "BOLT-8", onHand: 0, available: 0, lowStock: true, attributes: { size: 8 } })
      const taken = yield* call("POST", "/items", { sku: "BOLT-8", name: "Other" })
      expect(taken.status).toBe(409)
      expect(taken.json).toMatchObject({ _tag: "SkuTaken", sku: "BOLT-8" })

      const receive = yield* call("POST", "/adjustments", { kind: "receive", reason: "PO-17", lines: [{ sku: "BOLT-8", location: "main", quantity: 20 }] })
      expect(receive.status).toBe(201)
      expect(receive.json.lines).toEqual([{ sku: "BOLT-8", location: "main", quantity: 20, onHand: 20, available: 20 }])
      const negative = yield* call("POST", "/adjustments", { kind: "ship", reason: "oops", lines: [{ sku: "BOLT-8", location: "main", quantity: 21 }] })
      expect(negative.status).toBe(409)
      expect(negative.json).toMatchObject({ _tag: "InsufficientStock", sku: "BOLT-8", requested: 21, available: 20 })
      expect(negative.json.message).toContain("BOLT-8")
      const signed = yield* call("POST", "/adjustments", { kind: "ship", reason: "x", lines: [{ sku: "BOLT-8", location: "main", quantity: -2 }] })
      expect(signed.status).toBe(400)
      const zero = yield* call("POST", "/adjustments", { kind: "correct", reason: "x", lines: [{ sku: "BOLT-8", location: "main", quantity: 0 }] })
      expect(zero.status).toBe(400)
      const noReason = yield* call("POST", "/adjustments", { kind: "receive", lines: [{ sku: "BOLT-8", location: "main", quantity: 1 }] })
      expect(noReason.status).toBe(400)
      expect(JSON.stringify(noReason.json.issues)).toContain("reason")
      const oversize = yield* call("POST", "/adjustments", {
        kind: "receive",
        reason: "x",
        lines: Array.from({ length: 501 }, () => ({ sku: "BOLT-8", location: "main", quantity: 1 }))
      })
      expect(oversize.status).toBe(400)
      expect(JSON.stringify(oversize.json.issues)).toContain("lines")
      const negativeReservation = yield* call("POST", "/reservations", { reference: "r", lines: [{ sku: "BOLT-8", quantity: -1 }] })
      expect(negativeReservation.status).toBe(400)
      expect(JSON.stringify(negativeReservation.json.issues)).toContain("quantity")
      const unknownLocation = yield* call("POST", "/adjustments", { kind: "receive", reason: "x", lines: [{ sku: "BOLT-8", location: "roof", quantity: 1 }] })
      expect(unknownLocation.status).toBe(409)
      expect(unknownLocation.json).toMatchObject({ _tag: "UnknownLocation", location: "roof" })

      const corrected = yield* call("POST", "/adjustments", { kind: "correct", reason: "stock take", lines: [{ sku: "BOLT-8", location: "main", quantity: -3 }] })
      expect(corrected.json.lines[0]).toMatchObject({ quantity: -3, onHand: 17 })
      const log = yield* call("GET", "/items/BOLT-8/adjustments?limit=1")
      expect(log.json.items).toHaveLength(1)
      expect(log.json.items[0]).toMatchObject({ kind: "correct", quantity: -3, onHandAfter: 17, reason: "stock take", actor: { kind: "api_key" } })
      const older = yield* call("GET", `/items/BOLT-8/adjustments?limit=5&cursor=${log.json.nextCursor}`)
      expect(older.json.items.map((e: { reason: string }) => e.reason)).toEqual(["PO-17"])
      expect((yield* call("GET", "/items/NOPE")).status).toBe(404)
      expect((yield* call("GET", "/items/bad%20sku")).status).toBe(400)
      expect((yield* call("POST", "/items", { sku: "", name: "x" })).status).toBe(400)
    })
  )

  it.effect("soft delete with restore; reservations over HTTP; low-stock filter; permissions", () =>
    Effect.gen(function* () {
      const { base, call } = yield* setup
      yield* call("POST", "/locations", { code: "main", name: "Main" })
      for (const sku of ["P-1", "P-2", "P-3"]) yield* call("POST", "/items", { sku, name: `Part ${sku}`, reorderThreshold: 2 })
      yield* call("POST", "/adjustments", {
        kind: "receive",
        reason: "x",
        lines: [
          { sku: "P-1", location: "main", quantity: 5 },
          { sku: "P-2", location: "main", quantity: 1 }
        ]
      })
      expect((yield* call("DELETE", "/items/P-3")).status).toBe(204)
      expect((yield* call("DELETE", "/items/P-3")).status).toBe(404)
      const skus = (path: string) => Effect.map(call("GET", path), (r) => r.json.items.map((i: { sku: string }) => i.sku))
      expect(yield* skus("/items")).toEqual(["P-1", "P-2"])
      expect(yield* skus("/items?includeDeleted=true")).toEqual(["P-1", "P-2", "P-3"])
      expect(yield* skus("/items?lowStock=true")).toEqual(["P-2"])
      expect(yield* skus("/items?q=part%20p-1")).toEqual(["P-1"])
      const restored = yield* call("POST", "/items/P-3/restore")
      expect(restored.status).toBe(200)
      expect(restored.json.deletedAt).toBeNull()
      expect(yield* skus("/items")).toEqual(["P-1", "P-2", "P-3"])

      const reserved = yield* call("POST", "/reservations", { reference: "cart-9", lines: [{ sku: "P-1", quantity: 4 }] })
      expect(reserved.status).toBe(201)
      expect(reserved.json.lines).toMatchObject([{ sku: "P-1", location: "main", quantity: 4, status: "active" }])
      expect((yield* call("DELETE", "/items/P-1")).json).toMatchObject({ _tag: "ItemReserved", reserved: 4 })
      // P-1 crossed below its threshold by the reservation; P-3 (restored, empty) is low as well.
      expect(yield* skus("/items?lowStock=true")).toEqual(["P-1", "P-2", "P-3"])
      const tooMuch = yield* call("POST", "/reservations", { reference: "cart-10", lines: [{ sku: "P-1", quantity: 2 }] })
      expect(tooMuch.json).toMatchObject({ _tag: "InsufficientStock", sku: "P-1", available: 1 })
      const shipped = yield* call("POST", "/reservations/cart-9/commit")
      expect(shipped.json.lines[0].status).toBe("committed")
      expect((yield* call("GET", "/items/P-1")).json).toMatchObject({ onHand: 1, reserved: 0 })

      const reader = yield* createTenant(base, { permissions: ["inventory:read"] })
      const denied = yield* call("POST", "/items", { sku: "Q-1", name: "q" }, reader.headers)
      expect(denied.status).toBe(403)
      expect((yield* call("GET", "/items", undefined, reader.headers)).json.items).toEqual([])
      expect((yield* request(base, "GET", "/api/v1/inventory/items")).status).toBe(403)
    })
  )
})
