import { Either, JSONSchema } from "effect"
import type { EventType } from "../../core/Events.ts"
import type { Registry } from "../../core/Registry.ts"

/**
 * The event types endpoints can subscribe to: every type the enabled plugins publish, with
 * the JSON Schema of its `data`.
 */

export interface CatalogEntry {
  readonly type: string
  readonly plugin: string
  readonly event: EventType
}

export const catalogEntries = (registry: Registry): ReadonlyArray<CatalogEntry> =>
  [...registry.eventTypes.values()]
    .map((event) => ({
      type: event.type,
      plugin: registry.plugins.find((p) => p.events.publishes.includes(event))?.name ?? "",
      event
    }))
    .sort((a, b) => a.type.localeCompare(b.type))

/** Payload Schemas with no JSON form (a custom declaration) are listed without one rather than failing the list. */
const unrepresentable = (type: string) => ({ description: `the payload of ${type} has no JSON Schema` })

export const eventTypeList = (registry: Registry) => ({
  items: catalogEntries(registry).map(({ type, plugin, event }) => ({
    type,
    plugin,
    schema: Either.getOrElse(
      Either.try(() => JSONSchema.make(event.payload)),
      () => unrepresentable(type)
    )
  }))
})

const signatureHeaders = [
  { name: "webhook-id", description: "The message id: the same on every attempt of a message, the receiver's idempotency key." },
  { name: "webhook-timestamp", description: "Unix seconds of this attempt; reject it when too far from now (5 minutes)." },
  {
    name: "webhook-signature",
    description:
      "Space-separated `v1,<base64 HMAC-SHA256>` of `${webhook-id}.${webhook-timestamp}.${body}` keyed with the endpoint's " +
      "secret (base64 after `whsec_`); two of them for 24 hours after a secret rotation."
  }
].map((header) => ({ ...header, in: "header", required: true, schema: { type: "string" } }))

/**
 * An OpenAPI 3.1 document whose top-level `webhooks` describe every delivery: one POST per
 * event type with the Standard Webhooks headers and the `{type, timestamp, data}` body.
 * Payload Schemas with an identifier land in `components.schemas`.
 */
export const webhooksOpenApi = (registry: Registry) => {
  const schemas: Record<string, JSONSchema.JsonSchema7> = {}
  const webhooks: Record<string, unknown> = {}
  for (const { type, plugin, event } of catalogEntries(registry)) {
    const data = Either.getOrElse(
      Either.try(() =>
        JSONSchema.fromAST(event.payload.ast, { definitions: schemas, definitionPath: "#/components/schemas/", target: "openApi3.1" })
      ),
      () => unrepresentable(type)
    )
    webhooks[type] = {
      post: {
        summary: `${type} (published by ${plugin})`,
        operationId: `webhook.${type}`,
        parameters: signatureHeaders,
        requestBody: {
          required: true,
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["type", "timestamp", "data"],
                properties: {
                  type: { type: "string", enum: [type] },
                  timestamp: { type: "string", format: "date-time", description: "When the event occurred" },
                  data
                },
                additionalProperties: false
              }
            }
          }
        },
        responses: {
          "2XX": { description: "Received. Any other status, a redirect, a timeout (15 s) or a connection error fails the attempt." },
          "410": { description: "The endpoint is gone: it is disabled and receives nothing more." },
          "429": { description: "Slow down: the next attempt waits at least as long as `Retry-After` says." }
        }
      }
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Trellis webhooks",
      version: "1.0.0",
      description: "The deliveries webhook endpoints receive, signed per Standard Webhooks (standardwebhooks.com)."
    },
    webhooks,
    components: { schemas }
  }
}
