import { definePlugin } from "../../core/Plugin.ts"
import { OrdersApi } from "./Api.ts"
import { OrdersOptions } from "./Domain.ts"
import { OrderCancelled, OrderCreated, OrderStatusChanged } from "./Events.ts"
import { OrdersHttp } from "./Http.ts"
import { makeTasks } from "./Tasks.ts"

/**
 * Orders from every sales channel: placement with stock reserved through core's
 * StockReservations (implemented by the inventory plugin, never imported), the status
 * lifecycle with its history, lists, and a cron import per configured channel.
 */
export const orders = {
  name: "orders",
  options: OrdersOptions,
  make: (options: OrdersOptions) => {
    const { tasks, cron } = makeTasks(options)
    return definePlugin({
      name: "orders",
      description: "Orders, their lifecycle and sales channel imports",
      api: OrdersApi,
      http: OrdersHttp,
      tasks,
      cron,
      events: { publishes: [OrderCreated, OrderStatusChanged, OrderCancelled] },
      permissions: [
        { name: "orders:read", description: "Read orders, their history and the channels' import state" },
        { name: "orders:write", description: "Place orders and change their status" }
      ]
    })
  }
} as const
