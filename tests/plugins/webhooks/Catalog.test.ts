import SwaggerParser from "@apidevtools/swagger-parser"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { defineEvent } from "../../../core/Events.ts"
import { definePlugin } from "../../../core/Plugin.ts"
import { buildRegistry } from "../../../core/Registry.ts"
import { eventTypeList, webhooksOpenApi } from "../../../plugins/webhooks/Catalog.ts"
import { makeWebhooks } from "../../../plugins/webhooks/index.ts"
import { options, shop } from "./support.ts"

const Customer = Schema.Struct({ id: Schema.String, email: Schema.String }).annotations({ identifier: "Customer" })

const crm = definePlugin({
  name: "crm",
  events: {
    publishes: [
      defineEvent("crm.customer.created", Schema.Struct({ customer: Customer })),
      // Encodes to a Date, which JSON Schema cannot describe.
      defineEvent("crm.clock.ticked", Schema.Struct({ at: Schema.DateFromSelf }))
    ]
  },
  migrations: { load: Effect.succeed([]) }
})

const registry = buildRegistry([makeWebhooks(options()), shop, crm])

describe("webhooks event catalog", () => {
  it("lists every published event type, sorted, with its plugin and the JSON Schema of its data", () => {
    const { items } = eventTypeList(registry)
    expect(items.map((i) => [i.type, i.plugin])).toEqual([
      ["crm.clock.ticked", "crm"],
      ["crm.customer.created", "crm"],
      ["shop.invoice.paid", "shop"],
      ["shop.order.created", "shop"],
      ["shop.order.shipped", "shop"],
      ["webhooks.endpoint_disabled", "webhooks"]
    ])
    expect(items.find((i) => i.type === "crm.customer.created")!.schema).toMatchObject({
      $defs: { Customer: { type: "object", required: ["id", "email"] } },
      properties: { customer: { $ref: "#/$defs/Customer" } }
    })
    expect(items.find((i) => i.type === "crm.clock.ticked")!.schema).toEqual({ description: "the payload of crm.clock.ticked has no JSON Schema" })
  })

  it.effect("describes each delivery as an OpenAPI 3.1 webhook, named schemas in components", () =>
    Effect.gen(function* () {
      const document = webhooksOpenApi(registry)
      // JSON.parse's `any`: SwaggerParser types its input with openapi-types, a package Trellis does not declare.
      yield* Effect.promise(() => SwaggerParser.validate(JSON.parse(JSON.stringify(document))))
      expect(Object.keys(document.webhooks)).toHaveLength(6)
      expect(document.components.schemas).toHaveProperty("Customer")
      const created = document.webhooks["crm.customer.created"] as { post: { requestBody: { content: Record<string, { schema: unknown }> } } }
      expect(created.post.requestBody.content["application/json"]!.schema).toMatchObject({
        required: ["type", "timestamp", "data"],
        properties: { type: { enum: ["crm.customer.created"] }, data: { properties: { customer: { $ref: "#/components/schemas/Customer" } } } }
      })
    })
  )
})
