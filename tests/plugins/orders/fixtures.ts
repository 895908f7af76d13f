import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { FeatureGate } from "../../../core/FeatureGate.ts"
import { definePlugin } from "../../../core/Plugin.ts"
import { inTenant } from "../../../core/Tenancy.ts"
import { inventory } from "../../../plugins/inventory/index.ts"
import { ItemsRepo } from "../../../plugins/inventory/Items.ts"
import { StockLedger } from "../../../plugins/inventory/Stock.ts"
import type { OrderInput, OrdersOptions } from "../../../plugins/orders/Domain.ts"
import { orders } from "../../../plugins/orders/index.ts"
import { OrdersService } from "../../../plugins/orders/Orders.ts"
import { testAppLayer, type TestAppOptions } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"

export const inventoryPlugin = inventory.make({ expirySchedule: "* * * * *" })

/** Flags switched off in the test app's FeatureGate; every other flag is on. */
export const switchedOff = new Set<string>()

/** A FeatureGate as the flags plugin would provide it, answering from `switchedOff`. */
export const gatePlugin = definePlugin({
  name: "testgate",
  layer: Layer.succeed(FeatureGate, {
    isEnabled: (key) => Effect.sync(() => !switchedOff.has(key)),
    variant: () => Effect.succeed(Option.none())
  }),
  migrations: { load: Effect.succeed([]) }
})

/**
 * The app with inventory and orders on a database of its own, plus the orders service (which
 * the plugin builds for its routes and tasks, not as a plugin layer).
 */
export const ordersAppLayer = (options: OrdersOptions = { channels: [] }, extra: Partial<TestAppOptions> = {}) =>
  Layer.unwrapScoped(
    Effect.map(testDatabase(), (db) =>
      OrdersService.Default.pipe(
        Layer.provideMerge(
          testAppLayer({ databaseUrl: db.url, plugins: [inventoryPlugin, orders.make(options), gatePlugin], ...extra })
        )
      )
    )
  )

/** A fresh org with locations `main` and `north` and the given stock (all at `main` unless split). */
export const seedStock = (stock: ReadonlyArray<{ sku: string; main: number; north?: number }>, orgId: string = randomUUID()) =>
  Effect.gen(function* () {
    const items = yield* ItemsRepo
    const ledger = yield* StockLedger
    yield* inTenant(
      orgId,
      Effect.gen(function* () {
        yield* items.createLocation({ code: "main", name: "Main" })
        yield* items.createLocation({ code: "north", name: "North" })
        for (const line of stock) {
          yield* items.create({ sku: line.sku, name: `Item ${line.sku}`, unit: "each", reorderThreshold: 0, attributes: {} })
        }
        const lines = stock.flatMap((s) => [
          ...(s.main > 0 ? [{ sku: s.sku, location: "main", quantity: s.main }] : []),
          ...((s.north ?? 0) > 0 ? [{ sku: s.sku, location: "north", quantity: s.north! }] : [])
        ])
        if (lines.length > 0) yield* ledger.adjust({ kind: "receive", reason: "opening stock", lines })
      })
    )
    return orgId
  })

let counter = 0

export const orderInput = (items: ReadonlyArray<{ sku: string; qty: number; price?: number }>, overrides: Partial<OrderInput> = {}): OrderInput => ({
  externalId: `EXT-${Date.now()}-${++counter}`,
  customer: { name: "Ada Lovelace", phone: "+44 20 7946 0000", email: "ada@example.com" },
  items: items.map((i) => ({ sku: i.sku, name: `Item ${i.sku}`, qty: i.qty, price: i.price ?? 1250 })),
  currency: "EUR",
  ...overrides
})

export const countRows = (orgId: string, table: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    inTenant(orgId, sql<{ n: number }>`select count(*)::int as n from ${sql(table)}`).pipe(Effect.map((rows) => rows[0]!.n))
  )
