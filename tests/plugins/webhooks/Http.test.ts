import SwaggerParser from "@apidevtools/swagger-parser"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Webhook } from "standardwebhooks"
import { publish } from "../../../core/Events.ts"
import { request } from "../../support/app.ts"
import { createTenant } from "../../support/tenants.ts"
import { waitFor } from "../../support/wait.ts"
import { receiver } from "./receiver.ts"
import { app, asOrg, OrderCreated } from "./support.ts"

const api = "/api/v1/webhooks"

describe("webhooks over HTTP", () => {
  it.scopedLive("manages an org's endpoints with webhooks:admin; other orgs and other permissions get nothing", () =>
    Effect.gen(function* () {
      const { base } = yield* app({ http: true })
      const acme = yield* createTenant(base)
      const globex = yield* createTenant(base)
      const reader = yield* createTenant(base, { permissions: ["identity:read"] })
      const as = (tenant: { headers: Record<string, string> }) => ({
        call: (method: string, path: string, body?: unknown) => request(base, method, `${api}${path}`, body, tenant.headers)
      })
      const a = as(acme)

      const created = yield* a.call("POST", "/endpoints", {
        url: "https://hooks.acme.example/orders",
        description: "orders",
        eventTypes: ["shop.order.*"],
        headers: { "X-Acme": "1" },
        rateLimit: 5
      })
      expect(created.status).toBe(201)
      expect(created.json).toMatchObject({ url: "https://hooks.acme.example/orders", enabled: true, rateLimit: 5 })
      expect(created.json.secret).toMatch(/^whsec_/)
      const id = created.json.id as string

      expect((yield* a.call("GET", "/endpoints")).json).toMatchObject({ items: [{ id }], nextCursor: null })
      expect((yield* a.call("GET", `/endpoints/${id}`)).json).not.toHaveProperty("secret")
      const patched = yield* a.call("PATCH", `/endpoints/${id}`, { description: "all orders", enabled: false })
      expect(patched.json).toMatchObject({ description: "all orders", enabled: false, disabledReason: "manual" })
      expect((yield* a.call("GET", `/endpoints/${id}/secret`)).json).toEqual({ secret: created.json.secret, previousSecretExpiresAt: null })
      const rotated = yield* a.call("POST", `/endpoints/${id}/secret/rotate`)
      expect(rotated.status).toBe(200)
      expect(rotated.json.secret).not.toBe(created.json.secret)
      expect(Date.parse(rotated.json.previousSecretExpiresAt) - Date.now()).toBeGreaterThan(23 * 3600_000)

      // Another org: the endpoint does not exist for it.
      const g = as(globex)
      expect((yield* g.call("GET", "/endpoints")).json.items).toEqual([])
      for (const [method, path] of [
        ["GET", `/endpoints/${id}`],
        ["PATCH", `/endpoints/${id}`],
        ["DELETE", `/endpoints/${id}`],
        ["GET", `/endpoints/${id}/secret`],
        ["POST", `/endpoints/${id}/secret/rotate`]
      ] as const) {
        expect((yield* g.call(method, path, method === "PATCH" ? { description: "x" } : undefined)).status, `${method} ${path}`).toBe(404)
      }
      // A key without webhooks:admin, and the operator key (no organisation), are refused.
      const denied = yield* as(reader).call("GET", "/endpoints")
      expect(denied.status).toBe(403)
      expect(denied.json).toMatchObject({ _tag: "Forbidden", permission: "webhooks:admin" })
      const operator = yield* request(base, "GET", `${api}/endpoints`)
      expect(operator.status).toBe(403)
      expect(operator.json.message).toContain("organisation")

      expect((yield* a.call("DELETE", `/endpoints/${id}`)).status).toBe(204)
      expect((yield* a.call("GET", `/endpoints/${id}`)).status).toBe(404)
    })
  )

  it.scopedLive("answers bad input with a 400 naming the field", () =>
    Effect.gen(function* () {
      const { base } = yield* app({ http: true, webhooks: { requireHttps: true } })
      const acme = yield* createTenant(base)
      const post = (body: unknown) => request(base, "POST", `${api}/endpoints`, body, acme.headers)
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ url: "http://hooks.example.com/" }, "https"],
        [{ url: "https://10.0.0.1/" }, "private"],
        [{ url: "https://[::1]/" }, "loopback"],
        [{ url: "https://hooks.example.com/", eventTypes: ["not a type!"] }, "eventTypes"],
        [{ url: "https://hooks.example.com/", eventTypes: [] }, "eventTypes"],
        [{ url: "https://hooks.example.com/", headers: { "Webhook-Signature": "forged" } }, "cannot be overridden"],
        [{ url: "https://hooks.example.com/", headers: { "X-Split": "a\r\nInjected: 1" } }, "one line"],
        [{ url: "https://hooks.example.com/", rateLimit: 0 }, "rateLimit"]
      ]
      for (const [body, mention] of cases) {
        const response = yield* post(body)
        expect(response.status, JSON.stringify(body)).toBe(400)
        expect(response.text, JSON.stringify(body)).toContain(mention)
      }
      expect((yield* request(base, "GET", `${api}/endpoints/not-an-id`, undefined, acme.headers)).status).toBe(400)
      expect((yield* request(base, "GET", `${api}/messages?status=lost`, undefined, acme.headers)).status).toBe(400)
    })
  )

  it.scopedLive("delivers a published event through the worker, lists the message and its attempts, resends and recovers", () =>
    Effect.gen(function* () {
      const h = yield* app({ http: true, worker: true, config: { pollInterval: 50 } })
      const target = yield* receiver((_, response) => response.writeHead(200).end("got it"))
      const acme = yield* createTenant(h.base)
      const globex = yield* createTenant(h.base)
      const call = (method: string, path: string, body?: unknown, headers = acme.headers) =>
        request(h.base, method, `${api}${path}`, body, headers)
      const endpoint = (yield* call("POST", "/endpoints", { url: `${target.url}/in`, eventTypes: ["shop.order.created"] })).json

      yield* asOrg(h.context, acme.orgId)(publish(OrderCreated, { orderId: "o_42", total: 99.5 }))
      yield* waitFor("the delivery", Effect.sync(() => (target.requests.length === 1 ? true : undefined)))
      const [received] = target.requests
      const headers = Object.fromEntries(Object.entries(received!.headers).map(([k, v]) => [k, String(v)]))
      expect(new Webhook(endpoint.secret).verify(received!.body, headers)).toMatchObject({
        type: "shop.order.created",
        data: { orderId: "o_42", total: 99.5 }
      })

      const messages = yield* waitFor(
        "the attempt to be logged",
        Effect.map(call("GET", `/messages?endpointId=${endpoint.id}`), (r) => (r.json.items[0]?.status === "delivered" ? r.json : undefined))
      )
      const messageId = messages.items[0].id as string
      expect(messageId).toBe(headers["webhook-id"])
      expect(messages.items[0]).toMatchObject({ eventType: "shop.order.created", attempts: 1, endpointId: endpoint.id })
      expect((yield* call("GET", `/messages/${messageId}`)).json.payload).toMatchObject({ data: { orderId: "o_42" } })
      const attempts = (yield* call("GET", `/messages/${messageId}/attempts`)).json
      expect(attempts.items).toEqual([
        expect.objectContaining({ trigger: "scheduled", statusCode: 200, responseBody: "got it", succeeded: true, error: null })
      ])

      // Another org sees neither the message nor its attempts.
      expect((yield* call("GET", "/messages", undefined, globex.headers)).json.items).toEqual([])
      expect((yield* call("GET", `/messages/${messageId}/attempts`, undefined, globex.headers)).status).toBe(404)
      expect((yield* call("POST", `/messages/${messageId}/resend`, undefined, globex.headers)).status).toBe(404)

      const resent = yield* call("POST", `/messages/${messageId}/resend`)
      expect(resent.status).toBe(202)
      yield* waitFor("the resend", Effect.sync(() => (target.requests.length === 2 ? true : undefined)))
      expect(target.requests[1]!.headers["webhook-id"]).toBe(messageId)
      const recovered = yield* call("POST", `/endpoints/${endpoint.id}/recover`, { since: new Date(Date.now() - 3600_000).toISOString() })
      expect(recovered).toMatchObject({ status: 202, json: { count: 0 } })
    })
  )

  it.scopedLive("lists the event catalog with JSON Schemas and documents every delivery as an OpenAPI 3.1 webhook", () =>
    Effect.gen(function* () {
      const { base } = yield* app({ http: true })
      const acme = yield* createTenant(base)
      const catalog = yield* request(base, "GET", `${api}/event-types`, undefined, acme.headers)
      expect(catalog.status).toBe(200)
      const types = catalog.json.items.map((t: { type: string }) => t.type)
      expect(types).toEqual([...types].sort())
      expect(types).toEqual(expect.arrayContaining(["shop.invoice.paid", "shop.order.created", "shop.order.shipped", "webhooks.endpoint_disabled"]))
      const created = catalog.json.items.find((t: { type: string }) => t.type === "shop.order.created")
      expect(created).toMatchObject({
        plugin: "shop",
        schema: { type: "object", required: ["orderId", "total"], properties: { orderId: { type: "string" }, total: { type: "number" } } }
      })

      const document = yield* request(base, "GET", `${api}/openapi.json`, undefined, acme.headers)
      expect(document.json.openapi).toBe("3.1.0")
      yield* Effect.promise(() => SwaggerParser.validate(structuredClone(document.json)))
      expect(Object.keys(document.json.webhooks)).toEqual(types)
      const operation = document.json.webhooks["shop.order.created"].post
      expect(operation.parameters.map((p: { name: string }) => p.name)).toEqual(["webhook-id", "webhook-timestamp", "webhook-signature"])
      expect(operation.requestBody.content["application/json"].schema.properties).toMatchObject({
        type: { enum: ["shop.order.created"] },
        data: { properties: { orderId: { type: "string" } } }
      })

      const platform = yield* request(base, "GET", "/openapi.json")
      const operations = Object.entries(platform.json.paths as Record<string, Record<string, Record<string, unknown>>>)
        .filter(([path]) => path.startsWith(api))
        .flatMap(([, methods]) => Object.values(methods))
      expect(operations.length).toBeGreaterThanOrEqual(14)
      expect(new Set(operations.map((o) => o["x-required-permission"]))).toEqual(new Set(["webhooks:admin"]))
    })
  )
})
