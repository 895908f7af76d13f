import { Layer } from "effect"
import { definePlugin } from "../../core/Plugin.ts"
import { InventoryApi } from "./Api.ts"
import { InventoryOptions } from "./Domain.ts"
import { InventoryAdjusted, LowStock } from "./Events.ts"
import { InventoryHttp } from "./Http.ts"
import { ItemsRepo } from "./Items.ts"
import { layerStockReservations, StockLedger } from "./Stock.ts"
import { makeTasks } from "./Tasks.ts"

/**
 * Items, stock per location, adjustments with a log, reservations (core's
 * StockReservations, which orders use without importing this plugin) and low-stock events.
 */
export const inventory = {
  name: "inventory",
  options: InventoryOptions,
  make: (options: InventoryOptions) => {
    const { expireReservations, cron } = makeTasks(options)
    return definePlugin({
      name: "inventory",
      description: "Items, stock per location, adjustments and reservations",
      api: InventoryApi,
      http: InventoryHttp,
      tasks: [expireReservations],
      cron,
      events: { publishes: [InventoryAdjusted, LowStock] },
      layer: Layer.mergeAll(ItemsRepo.Default, layerStockReservations).pipe(Layer.provideMerge(StockLedger.Default)),
      permissions: [
        { name: "inventory:read", description: "Read items, stock, locations, the stock log and reservations" },
        { name: "inventory:write", description: "Change items, locations and stock; reserve, release and ship" }
      ]
    })
  }
} as const
