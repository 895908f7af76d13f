import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Schema } from "effect"
import { publish } from "../../../core/Events.ts"
import type { DeliverJob } from "../../../plugins/webhooks/Dispatch.ts"
import { ListMessagesParams } from "../../../plugins/webhooks/Domain.ts"
import { receiver } from "./receiver.ts"
import { app, deliverAll, InvoicePaid, OrderCreated, org, runDelivery, takeJobs } from "./support.ts"

const listParams = Schema.decodeUnknownSync(ListMessagesParams)

describe("webhook endpoints and messages", () => {
  it.scopedLive("creates, lists, updates and deletes endpoints, each change audited without secrets", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const acme = org(h)
      const created = yield* acme.create({
        url: "https://hooks.example.com/a",
        description: "orders",
        eventTypes: ["shop.order.*"],
        headers: { "X-Token": "s3cret-header" },
        rateLimit: 10
      })
      expect(created).toMatchObject({
        url: "https://hooks.example.com/a",
        description: "orders",
        eventTypes: ["shop.order.*"],
        enabled: true,
        disabledReason: null,
        headers: { "X-Token": "s3cret-header" },
        rateLimit: 10,
        failingSince: null
      })
      expect(created.id).toMatch(/^ep_[0-9a-f]{32}$/)
      expect(Buffer.from(created.secret.slice("whsec_".length), "base64")).toHaveLength(32)
      const second = yield* acme.create({ url: "https://hooks.example.com/b" })
      const third = yield* acme.create({ url: "https://hooks.example.com/c", enabled: false })
      expect(third).toMatchObject({ enabled: false, disabledReason: "manual" })

      const first = yield* acme.service((s) => s.list({ limit: 2 }))
      expect(first.items.map((e) => e.id)).toEqual([created.id, second.id])
      const rest = yield* acme.service((s) => s.list({ limit: 2, cursor: Number(first.nextCursor) }))
      expect(rest).toEqual({ items: [expect.objectContaining({ id: third.id })], nextCursor: null })

      const updated = yield* acme.service((s) => s.update(created.id, { eventTypes: null, rateLimit: null, enabled: false }))
      expect(updated).toMatchObject({ eventTypes: null, rateLimit: null, enabled: false, disabledReason: "manual", description: "orders" })
      yield* h.sql`update webhooks.endpoints set failing_since = now() where id = ${created.id}`
      const enabled = yield* acme.service((s) => s.update(created.id, { enabled: true, description: "all" }))
      expect(enabled).toMatchObject({ enabled: true, disabledReason: null, failingSince: null, description: "all" })

      yield* acme.service((s) => s.remove(second.id))
      expect(yield* Effect.flip(acme.service((s) => s.get(second.id)))).toMatchObject({ _tag: "NotFound", resource: "webhook_endpoint" })
      expect(yield* Effect.flip(acme.service((s) => s.remove(second.id)))).toMatchObject({ _tag: "NotFound" })
      yield* acme.service((s) => s.rotateSecret(created.id))

      const audit = yield* h.sql<{ org_id: string; action: string; target_id: string; details: Record<string, unknown> }>`
        select org_id::text, action, target_id, details from core.audit_log order by id`
      expect(audit.map((a) => [a.action, a.target_id])).toEqual([
        ["webhooks.create_endpoint", created.id],
        ["webhooks.create_endpoint", second.id],
        ["webhooks.create_endpoint", third.id],
        ["webhooks.update_endpoint", created.id],
        ["webhooks.update_endpoint", created.id],
        ["webhooks.delete_endpoint", second.id],
        ["webhooks.rotate_secret", created.id]
      ])
      expect(new Set(audit.map((a) => a.org_id))).toEqual(new Set([acme.id]))
      expect(audit[0]!.details).toMatchObject({ url: "https://hooks.example.com/a", headerNames: ["X-Token"] })
      const logged = JSON.stringify(audit)
      expect(logged).not.toContain("whsec_")
      expect(logged).not.toContain("s3cret-header")
    })
  )

  it.scopedLive("lists messages newest first by endpoint, event type, status and time, with a cursor", () =>
    Effect.gen(function* () {
      const h = yield* app()
      let failing = false
      const target = yield* receiver((_, response) => response.writeHead(failing ? 500 : 200).end())
      const acme = org(h)
      const orders = yield* acme.create({ url: `${target.url}/orders`, eventTypes: ["shop.order.*"] })
      const invoices = yield* acme.create({ url: `${target.url}/invoices`, eventTypes: ["shop.invoice.paid"] })
      yield* acme.as(publish(OrderCreated, { orderId: "o_1", total: 1 }))
      yield* acme.as(publish(InvoicePaid, { invoiceId: "i_1" }))
      yield* deliverAll(h)
      const since = yield* DateTime.now
      failing = true
      yield* acme.as(publish(OrderCreated, { orderId: "o_2", total: 2 }))
      yield* deliverAll(h)

      const list = (params: Record<string, string>) => acme.service((s) => s.listMessages(listParams(params)))
      const all = yield* list({})
      expect(all.items.map((m) => [m.endpointId, m.eventType, m.status])).toEqual([
        [orders.id, "shop.order.created", "pending"],
        [invoices.id, "shop.invoice.paid", "delivered"],
        [orders.id, "shop.order.created", "delivered"]
      ])
      expect(all.items[0]!.nextAttemptAt).not.toBeNull()
      const page1 = yield* list({ limit: "2" })
      const page2 = yield* list({ limit: "2", cursor: page1.nextCursor! })
      expect([...page1.items, ...page2.items]).toEqual(all.items)
      expect(page2.nextCursor).toBeNull()
      expect((yield* list({ endpointId: invoices.id })).items.map((m) => m.eventType)).toEqual(["shop.invoice.paid"])
      expect((yield* list({ eventType: "shop.order.created" })).items).toHaveLength(2)
      expect((yield* list({ status: "delivered" })).items).toHaveLength(2)
      expect((yield* list({ since: DateTime.formatIso(since) })).items.map((m) => m.id)).toEqual([all.items[0]!.id])

      const message = yield* acme.service((s) => s.getMessage(all.items[1]!.id))
      expect(message.payload).toMatchObject({ type: "shop.invoice.paid", data: { invoiceId: "i_1" } })
    })
  )

  it.scopedLive("resends one message now and recovers an endpoint's failed messages since a time", () =>
    Effect.gen(function* () {
      const h = yield* app({ webhooks: { retryDelays: [] } })
      let failing = true
      const target = yield* receiver((_, response) => response.writeHead(failing ? 503 : 200).end())
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      yield* acme.as(publish(OrderCreated, { orderId: "old", total: 1 }))
      yield* deliverAll(h)
      yield* Effect.sleep("20 millis")
      const since = yield* DateTime.now
      for (const orderId of ["a", "b", "c"]) yield* acme.as(publish(OrderCreated, { orderId, total: 1 }))
      yield* deliverAll(h)
      const failed = yield* acme.service((s) => s.listMessages(listParams({ status: "failed" })))
      expect(failed.items).toHaveLength(4)
      failing = false

      const [newest] = failed.items
      expect(yield* acme.service((s) => s.resend(newest!.id))).toEqual({ messageId: newest!.id })
      const [manual] = yield* takeJobs(h.sql, "webhooks.deliver")
      expect(manual).toMatchObject({ data: { endpointId: endpoint.id }, tenant: acme.id })
      yield* runDelivery(h.context, acme.id, manual!.data as DeliverJob)
      const attempts = yield* acme.service((s) => s.attempts(newest!.id, { limit: 10 }))
      expect(attempts.items.map((a) => [a.trigger, a.statusCode, a.succeeded])).toEqual([
        ["manual", 200, true],
        ["scheduled", 503, false]
      ])

      expect(yield* acme.service((s) => s.recover(endpoint.id, { since }))).toEqual({ count: 2 })
      // One wake-up for the endpoint, whose run sends both.
      const recovered = yield* takeJobs(h.sql, "webhooks.deliver")
      expect(recovered).toMatchObject([{ data: { endpointId: endpoint.id }, tenant: acme.id }])
      for (const job of recovered) yield* runDelivery(h.context, acme.id, job.data as DeliverJob)
      const statuses = yield* acme.service((s) => s.listMessages(listParams({})))
      expect(statuses.items.map((m) => m.status)).toEqual(["delivered", "delivered", "delivered", "failed"])
      expect(yield* acme.service((s) => s.recover(endpoint.id, { since }))).toEqual({ count: 0 })

      // A resend whose endpoint is disabled before the job runs: nothing is sent, the message fails.
      yield* acme.service((s) => s.resend(newest!.id))
      const [late] = yield* takeJobs(h.sql, "webhooks.deliver")
      yield* acme.service((s) => s.update(endpoint.id, { enabled: false }))
      const sent = target.requests.length
      yield* runDelivery(h.context, acme.id, late!.data as DeliverJob)
      expect(target.requests).toHaveLength(sent)
      expect((yield* acme.service((s) => s.getMessage(newest!.id))).status).toBe("failed")
      expect(yield* Effect.flip(acme.service((s) => s.resend(newest!.id)))).toMatchObject({ _tag: "Conflict" })
      expect(yield* Effect.flip(acme.service((s) => s.recover(endpoint.id, { since })))).toMatchObject({ _tag: "Conflict" })
      const [audit] = yield* h.sql<{ details: Record<string, unknown> }>`select details from core.audit_log where action = 'webhooks.recover'`
      expect(audit!.details).toMatchObject({ count: 2, since: DateTime.formatIso(since) })
    })
  )

  it.scopedLive("keeps each org's endpoints, messages and attempts to itself", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const target = yield* receiver()
      const acme = org(h)
      const globex = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      yield* acme.as(publish(OrderCreated, { orderId: "o_1", total: 1 }))
      yield* deliverAll(h)
      const [message] = (yield* acme.service((s) => s.listMessages(listParams({})))).items
      expect(message).toBeDefined()

      expect((yield* globex.service((s) => s.list({ limit: 50 }))).items).toEqual([])
      expect((yield* globex.service((s) => s.listMessages(listParams({})))).items).toEqual([])
      const foreign: ReadonlyArray<Effect.Effect<unknown, unknown>> = [
        globex.service((s) => s.get(endpoint.id)),
        globex.service((s) => s.update(endpoint.id, { description: "mine now" })),
        globex.service((s) => s.remove(endpoint.id)),
        globex.service((s) => s.secret(endpoint.id)),
        globex.service((s) => s.rotateSecret(endpoint.id)),
        globex.service((s) => s.recover(endpoint.id, { since: DateTime.unsafeMake(0) })),
        globex.service((s) => s.getMessage(message!.id)),
        globex.service((s) => s.attempts(message!.id, { limit: 10 })),
        globex.service((s) => s.resend(message!.id))
      ]
      for (const attempt of foreign) {
        expect(yield* Effect.flip(attempt)).toMatchObject({ _tag: "NotFound" })
      }
      // Row-level security, not only the queries' conditions: even a bare count sees nothing.
      const counts = yield* globex.as(
        Effect.flatMap(Effect.succeed(h.sql), (sql) =>
          sql<{ endpoints: number; messages: number; attempts: number }>`
            select (select count(*) from webhooks.endpoints)::int as endpoints, (select count(*) from webhooks.messages)::int as messages,
                   (select count(*) from webhooks.attempts)::int as attempts`
        )
      )
      expect(counts).toEqual([{ endpoints: 0, messages: 0, attempts: 0 }])
      expect(yield* acme.service((s) => s.get(endpoint.id))).toMatchObject({ description: "" })
    })
  )
})
