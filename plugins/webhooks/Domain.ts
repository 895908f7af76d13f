import { Context, Duration, Option, ParseResult, Schema } from "effect"
import { defaultDelays } from "./Schedule.ts"
import { isAllowListEntry, type Resolve } from "./Ssrf.ts"

/** A duration written as effect.config.ts would: "5 seconds", "30 minutes", "5 days". */
const DurationText = Schema.transformOrFail(Schema.String, Schema.DurationFromSelf, {
  strict: true,
  decode: (text, _, ast) =>
    Option.match(Duration.decodeUnknown(text), {
      onNone: () => ParseResult.fail(new ParseResult.Type(ast, text, `expected a duration such as "5 seconds", got ${JSON.stringify(text)}`)),
      onSome: ParseResult.succeed
    }),
  encode: (duration) => ParseResult.succeed(`${Duration.toMillis(duration)} millis`)
})

const AllowEntry = Schema.String.pipe(Schema.filter((entry) => isAllowListEntry(entry) || `${entry} is not an IP address or CIDR`))

export const WebhooksOptions = Schema.Struct({
  /** Plain http endpoints are refused unless this is false (development, tests). */
  requireHttps: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** Addresses reachable despite the SSRF rules, e.g. ["127.0.0.1/32"] in development. */
  allow: Schema.optionalWith(Schema.Array(AllowEntry), { default: () => [] }),
  /** The waits after failed attempts 1, 2, ...: one attempt more than there are delays. */
  retryDelays: Schema.optionalWith(Schema.Array(DurationText).pipe(Schema.maxItems(50)), {
    default: () => defaultDelays.map(Duration.decode)
  }),
  /** Each wait varies by up to this fraction either way. */
  jitter: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), { default: () => 0.2 }),
  /** For a whole attempt: connecting, sending and reading the answer. */
  timeout: Schema.optionalWith(DurationText, { default: () => Duration.seconds(15) }),
  /** An endpoint whose every attempt failed for this long is disabled. */
  disableAfter: Schema.optionalWith(DurationText, { default: () => Duration.days(5) }),
  /** A receiver's Retry-After is honoured up to this. */
  maxRetryAfter: Schema.optionalWith(DurationText, { default: () => Duration.hours(24) }),
  /** How long the previous secret keeps signing after a rotation. */
  secretOverlap: Schema.optionalWith(DurationText, { default: () => Duration.hours(24) })
})
export type WebhooksOptions = typeof WebhooksOptions.Type

/** What tests inject where the real thing cannot be controlled: DNS and the jitter's randomness. */
export interface WebhooksHooks {
  readonly resolve?: Resolve
  readonly random?: () => number
}

export class WebhooksSettings extends Context.Tag("webhooks/WebhooksSettings")<
  WebhooksSettings,
  WebhooksOptions & WebhooksHooks
>() {}

/** Response bodies kept in the attempt log. */
export const MAX_RESPONSE_BYTES = 4096

export const EndpointId = Schema.String.pipe(Schema.pattern(/^ep_[0-9a-f]{32}$/), Schema.brand("WebhookEndpointId"))
export type EndpointId = typeof EndpointId.Type

export const MessageId = Schema.String.pipe(Schema.pattern(/^msg_[0-9a-f]{32}$/), Schema.brand("WebhookMessageId"))
export type MessageId = typeof MessageId.Type

/** An exact event type (`order.created`), a prefix wildcard (`order.*`) or `*`. */
export const EventTypeFilter = Schema.String.pipe(
  Schema.pattern(/^(\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?)$/, {
    message: () => "an event type filter is an event type, a prefix ending in .* or *"
  }),
  Schema.maxLength(200)
)

/** Set by the delivery itself, so an endpoint's own headers cannot replace them. */
const RESERVED_HEADERS = new Set(["host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent"])

const headerToken = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$/

/** Why `name` cannot be a custom header, if it cannot. */
const headerNameProblem = (name: string): string | undefined => {
  const lower = name.toLowerCase()
  if (!headerToken.test(name)) return `header name ${JSON.stringify(name)} is not an HTTP token`
  if (RESERVED_HEADERS.has(lower) || lower.startsWith("webhook-")) return `header ${name} is set by the delivery and cannot be overridden`
  return undefined
}

// CR or LF would let a value start a header of its own.
const HeaderValue = Schema.String.pipe(Schema.pattern(/^[^\r\n\0]{0,1000}$/, { message: () => "a header value is one line" }))

// The names are checked by a filter on the whole record: a refined key Schema would drop bad names silently.
export const CustomHeaders = Schema.Record({ key: Schema.String, value: HeaderValue }).pipe(
  Schema.filter((headers) => {
    const names = Object.keys(headers)
    if (names.length > 20) return "at most 20 custom headers"
    return names.map(headerNameProblem).find((problem) => problem !== undefined) ?? true
  })
)

const Url = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(2048))
const Description = Schema.String.pipe(Schema.maxLength(500))
const EventTypes = Schema.Array(EventTypeFilter).pipe(Schema.minItems(1), Schema.maxItems(100))
/** Messages per second. */
const RateLimit = Schema.Int.pipe(Schema.between(1, 100_000))

export const CreateEndpoint = Schema.Struct({
  url: Url,
  description: Schema.optionalWith(Description, { default: () => "" }),
  /** null (the default) subscribes to every event type. */
  eventTypes: Schema.optionalWith(Schema.NullOr(EventTypes), { default: () => null }),
  enabled: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  headers: Schema.optionalWith(CustomHeaders, { default: () => ({}) }),
  rateLimit: Schema.optionalWith(Schema.NullOr(RateLimit), { default: () => null })
})
export type CreateEndpoint = typeof CreateEndpoint.Type

export const UpdateEndpoint = Schema.Struct({
  url: Schema.optional(Url),
  description: Schema.optional(Description),
  eventTypes: Schema.optional(Schema.NullOr(EventTypes)),
  enabled: Schema.optional(Schema.Boolean),
  headers: Schema.optional(CustomHeaders),
  rateLimit: Schema.optional(Schema.NullOr(RateLimit))
})
export type UpdateEndpoint = typeof UpdateEndpoint.Type

export const DisabledReason = Schema.Literal("manual", "gone", "failing")

export const Endpoint = Schema.Struct({
  id: Schema.String,
  url: Schema.String,
  description: Schema.String,
  eventTypes: Schema.NullOr(Schema.Array(Schema.String)),
  enabled: Schema.Boolean,
  /** Why a disabled endpoint is: by its owner, a 410 answer, or failing past `disableAfter`. */
  disabledReason: Schema.NullOr(DisabledReason),
  headers: Schema.Record({ key: Schema.String, value: Schema.String }),
  rateLimit: Schema.NullOr(Schema.Int),
  /** Since when every attempt has failed; null after a success. */
  failingSince: Schema.NullOr(Schema.DateTimeUtc),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
})
export type Endpoint = typeof Endpoint.Type

export const EndpointWithSecret = Schema.Struct({ ...Endpoint.fields, secret: Schema.String })

export const EndpointSecret = Schema.Struct({
  secret: Schema.String,
  /** Still signing until `previousSecretExpiresAt`, after a rotation. */
  previousSecretExpiresAt: Schema.NullOr(Schema.DateTimeUtc)
})

const Limit = Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 200)), { default: () => 50 })
const Cursor = Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.positive()))

export const PageParams = Schema.Struct({ limit: Limit, cursor: Cursor })
export type PageParams = typeof PageParams.Type

const page = <A, I>(item: Schema.Schema<A, I>) =>
  Schema.Struct({
    items: Schema.Array(item),
    /** Pass as `cursor` for the next page; null on the last page. */
    nextCursor: Schema.NullOr(Schema.String)
  })

export const EndpointPage = page(Endpoint)

export const MessageStatus = Schema.Literal("pending", "delivered", "failed")
export type MessageStatus = typeof MessageStatus.Type

export const Message = Schema.Struct({
  id: Schema.String,
  endpointId: Schema.String,
  eventId: Schema.String,
  eventType: Schema.String,
  status: MessageStatus,
  attempts: Schema.Int,
  nextAttemptAt: Schema.NullOr(Schema.DateTimeUtc),
  lastAttemptAt: Schema.NullOr(Schema.DateTimeUtc),
  createdAt: Schema.DateTimeUtc
})
export type Message = typeof Message.Type

/** One message with the body its deliveries carry. */
export const MessageWithPayload = Schema.Struct({ ...Message.fields, payload: Schema.Unknown })

export const MessagePage = page(Message)

export const ListMessagesParams = Schema.Struct({
  endpointId: Schema.optional(EndpointId),
  eventType: Schema.optional(Schema.String),
  status: Schema.optional(MessageStatus),
  since: Schema.optional(Schema.DateTimeUtc),
  limit: Limit,
  cursor: Cursor
})
export type ListMessagesParams = typeof ListMessagesParams.Type

export const AttemptTrigger = Schema.Literal("scheduled", "manual")

export const Attempt = Schema.Struct({
  id: Schema.String,
  messageId: Schema.String,
  trigger: AttemptTrigger,
  attemptedAt: Schema.DateTimeUtc,
  /** null when no answer came (timeout, connection error, blocked address). */
  statusCode: Schema.NullOr(Schema.Int),
  durationMs: Schema.Int,
  /** The first 4 KiB of the answer. */
  responseBody: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String),
  succeeded: Schema.Boolean
})
export type Attempt = typeof Attempt.Type

export const AttemptPage = page(Attempt)

export const Recover = Schema.Struct({
  since: Schema.DateTimeUtc,
  until: Schema.optional(Schema.DateTimeUtc)
})
export type Recover = typeof Recover.Type

export const Recovered = Schema.Struct({ count: Schema.Int })

export const Resent = Schema.Struct({ messageId: Schema.String })

export const EventTypeInfo = Schema.Struct({
  type: Schema.String,
  plugin: Schema.String,
  /** JSON Schema of the event's `data`. */
  schema: Schema.Unknown
})

export const EventTypeList = Schema.Struct({ items: Schema.Array(EventTypeInfo) })
