import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** A channel name: `website`, `amazon`, `blinkit`, ... */
export const ChannelName = Schema.String.pipe(
  Schema.pattern(/^[a-z][a-z0-9_-]{0,31}$/, { message: () => "a channel is 1-32 lower-case letters, digits, '_' or '-'" })
)

const httpUrl = Schema.String.pipe(
  Schema.filter((value) => {
    try {
      return ["http:", "https:"].includes(new URL(value).protocol) || "must be an http(s) URL"
    } catch {
      return "must be an http(s) URL"
    }
  })
)

/** A channel whose new orders a cron task pulls from its HTTP endpoint into one org. */
export const ChannelConfig = Schema.Struct({
  name: ChannelName,
  /** The organisation its orders are imported into. */
  orgId: Schema.UUID,
  /** Answers `GET <url>?limit=<n>[&cursor=<c>]` with `{ orders: [...], nextCursor }`. */
  url: httpUrl,
  schedule: Schema.optionalWith(Schema.String, { default: () => "* * * * *" }),
  pageSize: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 500)), { default: () => 100 }),
  /** Pages one run fetches at most, so a large backlog is spread over several runs. */
  maxPagesPerRun: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 1000)), { default: () => 50 }),
  /** One request's time limit. */
  timeoutMs: Schema.optionalWith(Schema.Int.pipe(Schema.between(50, 120_000)), { default: () => 10_000 }),
  /** Retries of a page after a transient failure (network, timeout, 429, 5xx), with backoff. */
  retries: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 10)), { default: () => 3 }),
  retryBaseMs: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 60_000)), { default: () => 500 }),
  /** Failed runs in a row that open the circuit breaker. */
  failureThreshold: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 100)), { default: () => 5 }),
  /** How long an open breaker skips runs before one trial run (half-open). */
  cooldownSeconds: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 86_400)), { default: () => 300 })
})
export type ChannelConfig = typeof ChannelConfig.Type

export const OrdersOptions = Schema.Struct({
  channels: Schema.optionalWith(
    Schema.Array(ChannelConfig).pipe(
      Schema.filter((channels) => {
        const names = channels.map((c) => c.name)
        const twice = names.find((name, i) => names.indexOf(name) !== i)
        return twice === undefined || `channel ${twice} is configured twice`
      })
    ),
    { default: () => [] }
  )
})
export type OrdersOptions = typeof OrdersOptions.Type

/**
 * Fields the API only sends, which the database already guarantees: plain strings to encode,
 * carrying their format for the OpenAPI document. (A UUID or DateTimeUtc Schema checks every
 * value again on the way out: half the cost of encoding a page of 50 orders.)
 */
const IdOut = Schema.String.annotations({ jsonSchema: { type: "string", format: "uuid" } })
const TimestampOut = Schema.String.annotations({ jsonSchema: { type: "string", format: "date-time" } })

export const OrderStatus = Schema.Literal("PLACED", "CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED")
export type OrderStatus = typeof OrderStatus.Type

/** The lifecycle: forward one step at a time, or cancelled before shipping. */
export const NEXT_STATUSES: Readonly<Record<OrderStatus, ReadonlyArray<OrderStatus>>> = {
  PLACED: ["CONFIRMED", "CANCELLED"],
  CONFIRMED: ["SHIPPED", "CANCELLED"],
  SHIPPED: ["DELIVERED"],
  DELIVERED: [],
  CANCELLED: []
}

const currencies = new Set(Intl.supportedValuesOf("currency"))

/** An active ISO 4217 code, as the runtime's ICU data knows them. */
export const Currency = Schema.String.pipe(
  Schema.filter((code) => currencies.has(code) || `${JSON.stringify(code)} is not an ISO 4217 currency code`)
)

/** Amounts are integers in the currency's minor unit (cents, paise, fils). */
export const MinorUnits = Schema.Int.pipe(Schema.between(0, 1_000_000_000))

export const Customer = Schema.Struct({
  name: Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(200)),
  phone: Schema.String.pipe(
    Schema.pattern(/^\+?[0-9][0-9 ()-]{3,24}$/, { message: () => "must be a phone number: digits, spaces, ()- and an optional +" })
  ),
  email: Schema.optional(
    Schema.String.pipe(
      Schema.maxLength(320),
      Schema.pattern(/^[^\s@]+@[^\s@]+$/, { message: () => "must be an email address" })
    )
  )
})

export const OrderLine = Schema.Struct({
  sku: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64)),
  name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  qty: Schema.Int.pipe(Schema.between(1, 10_000)),
  /** Unit price in minor units. */
  price: MinorUnits
})

const MAX_LINES = 100

/**
 * An order as a client or channel sends it. Limits keep every total below 2^53 (100 lines of
 * at most 10^4 units at 10^9 minor units), so totals are exact JavaScript numbers.
 */
export const OrderInput = Schema.Struct({
  externalId: Schema.String.pipe(Schema.pattern(/^[\x21-\x7e]{1,100}$/, { message: () => "must be 1-100 printable characters" })),
  customer: Customer,
  items: Schema.Array(OrderLine).pipe(Schema.minItems(1), Schema.maxItems(MAX_LINES)),
  currency: Currency,
  /** Optional: when sent it must equal the total the server computes from the items. */
  total: Schema.optional(Schema.Int)
})
export type OrderInput = typeof OrderInput.Type

export const CreateOrder = Schema.Struct({
  ...OrderInput.fields,
  channel: Schema.optionalWith(ChannelName, { default: () => "website" })
})
export type CreateOrder = typeof CreateOrder.Type

export const OrderSummary = Schema.Struct({
  id: IdOut,
  channel: Schema.String,
  externalId: Schema.String,
  status: OrderStatus,
  customer: Schema.Struct({ name: Schema.String, phone: Schema.String, email: Schema.NullOr(Schema.String) }),
  currency: Schema.String,
  total: Schema.Int,
  itemCount: Schema.Int,
  createdAt: TimestampOut,
  updatedAt: TimestampOut
})
export type OrderSummary = typeof OrderSummary.Type

export const HistoryEntry = Schema.Struct({
  from: Schema.NullOr(OrderStatus),
  to: OrderStatus,
  actor: Schema.Struct({ kind: Schema.String, id: Schema.String }),
  note: Schema.NullOr(Schema.String),
  at: TimestampOut
})

export const Order = Schema.Struct({
  ...OrderSummary.fields,
  items: Schema.Array(Schema.Struct({ ...OrderLine.fields, lineTotal: Schema.Int })),
  history: Schema.Array(HistoryEntry)
})
export type Order = typeof Order.Type

export const OrderSort = Schema.Literal("createdAt", "-createdAt", "total", "-total")
export type OrderSort = typeof OrderSort.Type

export const ListOrdersParams = Schema.Struct({
  channel: Schema.optional(ChannelName),
  status: Schema.optional(OrderStatus),
  /** Created at or after. */
  from: Schema.optional(Schema.DateTimeUtc),
  /** Created before. */
  to: Schema.optional(Schema.DateTimeUtc),
  /** Matches anywhere in the customer's name or email, the external id or a sku. */
  q: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100))),
  sort: Schema.optionalWith(OrderSort, { default: () => "-createdAt" as const }),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 200)), { default: () => 50 }),
  cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(512)))
})
export type ListOrdersParams = typeof ListOrdersParams.Type

export const OrderPage = Schema.Struct({
  items: Schema.Array(OrderSummary),
  /** Pass as `cursor` (with the same filters and sort) for the next page; null on the last page. */
  nextCursor: Schema.NullOr(Schema.String)
})

export const OrderIdPath = Schema.Struct({ id: Schema.UUID })

export const ChangeStatus = Schema.Struct({
  status: OrderStatus,
  note: Schema.optional(Schema.String.pipe(Schema.maxLength(500)))
})

export const ChannelState = Schema.Struct({
  channel: Schema.String,
  breaker: Schema.Literal("closed", "open", "half_open"),
  consecutiveFailures: Schema.Int,
  cursor: Schema.NullOr(Schema.String),
  lastError: Schema.NullOr(Schema.String),
  lastRunAt: Schema.NullOr(TimestampOut),
  lastSuccessAt: Schema.NullOr(TimestampOut),
  imported: Schema.Int,
  rejected: Schema.Int
})

export class DuplicateOrder extends Schema.TaggedError<DuplicateOrder>()(
  "DuplicateOrder",
  { message: Schema.String, channel: Schema.String, externalId: Schema.String, orderId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class IllegalTransition extends Schema.TaggedError<IllegalTransition>()(
  "IllegalTransition",
  { message: Schema.String, orderId: Schema.String, from: OrderStatus, to: OrderStatus },
  HttpApiSchema.annotations({ status: 409 })
) {}
