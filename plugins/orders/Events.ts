import { Schema } from "effect"
import { defineEvent } from "../../core/Events.ts"
import { OrderStatus } from "./Domain.ts"

// Named `orders.*`: core's registry requires a plugin's event types to start with its own
// name (the issue asked for `order.*`; see the plugin's notes).

/** An order was placed and its stock reserved. Customer details stay out: fetch the order. */
export const OrderCreated = defineEvent(
  "orders.created",
  Schema.Struct({
    orderId: Schema.UUID,
    channel: Schema.String,
    externalId: Schema.String,
    currency: Schema.String,
    total: Schema.Int,
    items: Schema.Array(Schema.Struct({ sku: Schema.String, qty: Schema.Int, price: Schema.Int }))
  })
)

export const OrderStatusChanged = defineEvent(
  "orders.status_changed",
  Schema.Struct({
    orderId: Schema.UUID,
    from: OrderStatus,
    to: OrderStatus,
    note: Schema.NullOr(Schema.String)
  })
)

/** Also published as a status change; this one is for subscribers that only care about cancellations. */
export const OrderCancelled = defineEvent(
  "orders.cancelled",
  Schema.Struct({
    orderId: Schema.UUID,
    from: OrderStatus,
    note: Schema.NullOr(Schema.String)
  })
)
