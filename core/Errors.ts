import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/**
 * The one JSON error shape of the API: `{ "_tag": "...", "message": "..." }` plus fields
 * specific to the error. Every error carries its HTTP status, so handlers fail with these
 * and HttpApi encodes the status and body.
 */

export class BadRequest extends Schema.TaggedError<BadRequest>()(
  "BadRequest",
  { message: Schema.String, field: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 400 })
) {}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String, permission: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 403 })
) {}

export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String, resource: Schema.optional(Schema.String), id: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class UnprocessableEntity extends Schema.TaggedError<UnprocessableEntity>()(
  "UnprocessableEntity",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 422 })
) {}

/** Carries `Retry-After` and the `RateLimit-*` headers, set by the rate limiter. */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()(
  "TooManyRequests",
  { message: Schema.String, retryAfterSeconds: Schema.Number },
  HttpApiSchema.annotations({ status: 429 })
) {}

export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { message: Schema.String, flag: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** Unexpected failures (a database outage, a bug): the body never carries the cause. */
export class InternalError extends Schema.TaggedError<InternalError>()(
  "InternalError",
  { message: Schema.String, requestId: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 500 })
) {}
