import { Schema } from "effect"
import { defineEvent } from "../../core/Events.ts"
import { AdjustmentKind } from "./Domain.ts"

/** On-hand stock changed: an adjustment, or reserved units shipped (`reference` names the order). */
export const InventoryAdjusted = defineEvent(
  "inventory.adjusted",
  Schema.Struct({
    batchId: Schema.UUID,
    kind: AdjustmentKind,
    reason: Schema.String,
    reference: Schema.NullOr(Schema.String),
    lines: Schema.Array(
      Schema.Struct({ sku: Schema.String, location: Schema.String, quantity: Schema.Int, onHand: Schema.Int })
    )
  })
)

/** Available stock of an item fell below its reorder threshold (once per crossing). */
export const LowStock = defineEvent(
  "inventory.low_stock",
  Schema.Struct({
    itemId: Schema.UUID,
    sku: Schema.String,
    name: Schema.String,
    available: Schema.Int,
    reorderThreshold: Schema.Int
  })
)
