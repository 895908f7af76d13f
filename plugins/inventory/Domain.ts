import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

export const InventoryOptions = Schema.Struct({
  /** When `inventory.expire_reservations` releases reservations past their expiry (cron, UTC). */
  expirySchedule: Schema.optionalWith(Schema.String, { default: () => "* * * * *" })
})
export type InventoryOptions = typeof InventoryOptions.Type

/** URL-safe, so a SKU can name its item in a path. */
export const Sku = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "a sku is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
  })
)

export const LocationCode = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/, {
    message: () => "a location code is 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
  })
)

const Name = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))
const Quantity = Schema.Int.pipe(Schema.between(1, 1_000_000_000))

export const Attributes = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * Fields the API only sends, which the database already guarantees: plain strings to encode,
 * carrying their format for the OpenAPI document. (A UUID or DateTimeUtc Schema checks every
 * value again on the way out: half the cost of encoding a page.)
 */
const IdOut = Schema.String.annotations({ jsonSchema: { type: "string", format: "uuid" } })
const TimestampOut = Schema.String.annotations({ jsonSchema: { type: "string", format: "date-time" } })

export const CreateLocation = Schema.Struct({ code: LocationCode, name: Name })
export type CreateLocation = typeof CreateLocation.Type

export const Location = Schema.Struct({
  id: IdOut,
  code: Schema.String,
  name: Schema.String,
  createdAt: TimestampOut
})
export type Location = typeof Location.Type

export const CreateItem = Schema.Struct({
  sku: Sku,
  name: Name,
  unit: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(32)), { default: () => "each" }),
  reorderThreshold: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 1_000_000_000)), { default: () => 0 }),
  attributes: Schema.optionalWith(Attributes, { default: () => ({}) })
})
export type CreateItem = typeof CreateItem.Type

export const UpdateItem = Schema.Struct({
  name: Schema.optional(Name),
  unit: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(32))),
  reorderThreshold: Schema.optional(Schema.Int.pipe(Schema.between(0, 1_000_000_000))),
  attributes: Schema.optional(Attributes)
})
export type UpdateItem = typeof UpdateItem.Type

export const LocationStock = Schema.Struct({
  location: Schema.String,
  onHand: Schema.Int,
  reserved: Schema.Int,
  available: Schema.Int
})

export const Item = Schema.Struct({
  id: IdOut,
  sku: Schema.String,
  name: Schema.String,
  unit: Schema.String,
  reorderThreshold: Schema.Int,
  attributes: Attributes,
  onHand: Schema.Int,
  reserved: Schema.Int,
  available: Schema.Int,
  /** Available stock is below the reorder threshold. */
  lowStock: Schema.Boolean,
  locations: Schema.Array(LocationStock),
  createdAt: TimestampOut,
  updatedAt: TimestampOut,
  deletedAt: Schema.NullOr(TimestampOut)
})
export type Item = typeof Item.Type

export const ItemSort = Schema.Literal("sku", "-sku", "name", "-name", "available", "-available", "createdAt", "-createdAt")
export type ItemSort = typeof ItemSort.Type

export const ListItemsParams = Schema.Struct({
  /** Matches anywhere in the sku or name, case-insensitively. */
  q: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100))),
  /** Items with a stock row at this location. */
  location: Schema.optional(LocationCode),
  lowStock: Schema.optionalWith(Schema.BooleanFromString, { default: () => false }),
  includeDeleted: Schema.optionalWith(Schema.BooleanFromString, { default: () => false }),
  sort: Schema.optionalWith(ItemSort, { default: () => "sku" as const }),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 200)), { default: () => 50 }),
  cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(512)))
})
export type ListItemsParams = typeof ListItemsParams.Type

export const ItemPage = Schema.Struct({
  items: Schema.Array(Item),
  /** Pass as `cursor` (with the same filters and sort) for the next page; null on the last page. */
  nextCursor: Schema.NullOr(Schema.String)
})

export const SkuPath = Schema.Struct({ sku: Sku })

export const AdjustmentKind = Schema.Literal("receive", "ship", "correct")
export type AdjustmentKind = typeof AdjustmentKind.Type

export const AdjustmentLine = Schema.Struct({
  sku: Sku,
  location: LocationCode,
  /** Units received or shipped (positive); for `correct`, the signed change (not zero). */
  quantity: Schema.Int.pipe(Schema.between(-1_000_000_000, 1_000_000_000), Schema.filter((n) => n !== 0 || "must not be 0"))
})

export const CreateAdjustment = Schema.Struct({
  kind: AdjustmentKind,
  reason: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(500)),
  lines: Schema.Array(AdjustmentLine).pipe(Schema.minItems(1), Schema.maxItems(500))
}).pipe(
  Schema.filter((adjustment) =>
    adjustment.kind === "correct" || adjustment.lines.every((line) => line.quantity > 0)
      ? undefined
      : { path: ["lines"], message: `${adjustment.kind} quantities must be positive; use correct for a signed change` }
  )
)
export type CreateAdjustment = typeof CreateAdjustment.Type

export const AdjustedLine = Schema.Struct({
  sku: Schema.String,
  location: Schema.String,
  /** The signed change of on-hand stock. */
  quantity: Schema.Int,
  onHand: Schema.Int,
  available: Schema.Int
})

export const Adjustment = Schema.Struct({
  batchId: IdOut,
  kind: AdjustmentKind,
  reason: Schema.String,
  lines: Schema.Array(AdjustedLine)
})
export type Adjustment = typeof Adjustment.Type

export const AdjustmentLogEntry = Schema.Struct({
  id: Schema.Int,
  batchId: IdOut,
  sku: Schema.String,
  location: Schema.String,
  kind: AdjustmentKind,
  quantity: Schema.Int,
  onHandAfter: Schema.Int,
  reason: Schema.String,
  reference: Schema.NullOr(Schema.String),
  actor: Schema.Struct({ kind: Schema.String, id: Schema.String }),
  at: TimestampOut
})

export const AdjustmentLogParams = Schema.Struct({
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 200)), { default: () => 50 }),
  cursor: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.positive()))
})

export const AdjustmentLogPage = Schema.Struct({
  items: Schema.Array(AdjustmentLogEntry),
  nextCursor: Schema.NullOr(Schema.String)
})

export const ReservationLine = Schema.Struct({ sku: Sku, quantity: Quantity })

export const CreateReservation = Schema.Struct({
  reference: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  lines: Schema.Array(ReservationLine).pipe(Schema.minItems(1), Schema.maxItems(500)),
  /** Released by `inventory.expire_reservations` after this time unless committed first. */
  expiresAt: Schema.optional(Schema.DateTimeUtc)
})

export const ReferencePath = Schema.Struct({ reference: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)) })

export const Reservation = Schema.Struct({
  sku: Schema.String,
  location: Schema.String,
  quantity: Schema.Int,
  status: Schema.Literal("active", "released", "committed"),
  expiresAt: Schema.NullOr(TimestampOut),
  createdAt: TimestampOut
})

export const Reservations = Schema.Struct({ reference: Schema.String, lines: Schema.Array(Reservation) })

export class SkuTaken extends Schema.TaggedError<SkuTaken>()(
  "SkuTaken",
  { message: Schema.String, sku: Schema.String, deleted: Schema.Boolean },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class LocationTaken extends Schema.TaggedError<LocationTaken>()(
  "LocationTaken",
  { message: Schema.String, code: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class UnknownLocation extends Schema.TaggedError<UnknownLocation>()(
  "UnknownLocation",
  { message: Schema.String, location: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** Deleting an item that still has units held for orders would strand those orders. */
export class ItemReserved extends Schema.TaggedError<ItemReserved>()(
  "ItemReserved",
  { message: Schema.String, sku: Schema.String, reserved: Schema.Int },
  HttpApiSchema.annotations({ status: 409 })
) {}
