import { Schema } from "effect"
import { defineEvent } from "../../core/Events.ts"

/** An endpoint the platform disabled: it answered 410 Gone, or every attempt failed for too long. */
export const EndpointDisabled = defineEvent(
  "webhooks.endpoint_disabled",
  Schema.Struct({
    endpointId: Schema.String,
    url: Schema.String,
    reason: Schema.Literal("gone", "failing"),
    failingSince: Schema.NullOr(Schema.DateTimeUtc),
    disabledAt: Schema.DateTimeUtc
  })
)
