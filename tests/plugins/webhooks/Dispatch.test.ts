import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import type { ServerResponse } from "node:http"
import { publish } from "../../../core/Events.ts"
import { CurrentTenant } from "../../../core/Tenancy.ts"
import { type DeliverJob, fanOutTask } from "../../../plugins/webhooks/Dispatch.ts"
import { receiver } from "./receiver.ts"
import {
  type App,
  app,
  deliverAll,
  dueNow,
  endpointOfJob,
  fanOutNow,
  InvoicePaid,
  messageOf,
  OrderCreated,
  org,
  runDelivery,
  takeJobs,
  verify
} from "./support.ts"

const decodeEvent = Schema.decodeUnknownSync(fanOutTask.payload)

const endpointOf = (h: App, endpointId: string) =>
  Effect.map(
    h.sql<{ enabled: boolean; disabled_reason: string | null; failing_since: Date | null }>`
      select enabled, disabled_reason, failing_since from webhooks.endpoints where id = ${endpointId}`,
    (rows) => rows[0]!
  )

const messageIds = (h: App) =>
  Effect.map(h.sql<{ id: string }>`select id from webhooks.messages order by seq`, (rows) => rows.map((row) => row.id))

const disabledEvents = (h: App) =>
  h.sql<{ org_id: string; payload: { endpointId: string; reason: string; failingSince: string | null } }>`
    select org_id, payload from core.outbox_events where type = 'webhooks.endpoint_disabled' order by occurred_at`

describe("webhooks fan-out and delivery", () => {
  it.scopedLive("creates one message per matching enabled endpoint of the event's org, once, due now, with a wake-up per endpoint", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const acme = org(h)
      const other = org(h)
      const url = "http://127.0.0.1:9/hook"
      const all = yield* acme.create({ url })
      const exact = yield* acme.create({ url, eventTypes: ["shop.order.created"] })
      const wildcard = yield* acme.create({ url, eventTypes: ["shop.invoice.paid", "shop.order.*"] })
      yield* acme.create({ url, eventTypes: ["shop.invoice.*"] })
      yield* acme.create({ url, enabled: false })
      yield* other.create({ url })

      const published = yield* acme.publishOrder("o_1")
      const [fanOutJob, ...rest] = yield* takeJobs(h.sql, "webhooks.fan_out")
      expect(rest).toEqual([])
      expect(fanOutJob!.tenant).toBe(acme.id)
      const event = decodeEvent(fanOutJob!.data)
      const run = fanOutTask.handler(event).pipe(Effect.provideService(CurrentTenant, Option.some(acme.id)), Effect.provide(h.context))
      yield* run
      // A fan-out job run again (after a crash before graphile-worker completed it) adds nothing.
      yield* run

      const messages = yield* h.sql<{ id: string; endpoint_id: string; org_id: string; event_id: string; body: string; due: boolean }>`
        select id, endpoint_id, org_id::text, event_id::text, body, due_at <= now() as due from webhooks.messages order by endpoint_id`
      expect(messages.map((m) => m.endpoint_id).sort()).toEqual([all.id, exact.id, wildcard.id].sort())
      expect(new Set(messages.map((m) => m.org_id))).toEqual(new Set([acme.id]))
      expect(messages.every((m) => m.event_id === published.id && /^msg_[0-9a-f]{32}$/.test(m.id) && m.due)).toBe(true)
      const [occurred] = yield* h.sql<{ occurred_at: Date }>`select occurred_at from core.outbox_events where id = ${published.id}`
      expect(JSON.parse(messages[0]!.body)).toEqual({
        type: "shop.order.created",
        timestamp: occurred!.occurred_at.toISOString(),
        data: { orderId: "o_1", total: 12.5 }
      })

      // One wake-up per endpoint, however often the fan-out ran: the pending one covers both runs.
      const jobs = yield* takeJobs(h.sql, "webhooks.deliver")
      expect(jobs.map((j) => j.tenant)).toEqual([acme.id, acme.id, acme.id])
      expect(jobs.map(endpointOfJob).sort()).toEqual([all.id, exact.id, wildcard.id].sort())
    })
  )

  it.scopedLive("delivers signed messages standardwebhooks verifies, with custom headers, and logs the attempt", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const target = yield* receiver((_, response) => response.writeHead(200).end("thanks"))
      const acme = org(h)
      const endpoint = yield* acme.create({ url: `${target.url}/hook`, headers: { "X-Tenant": "acme" } })
      yield* acme.publishOrder("o_1")
      const [job] = yield* fanOutNow(h)
      const [messageId] = yield* messageIds(h)

      yield* runDelivery(h.context, acme.id, job!.data as DeliverJob)
      expect(target.requests).toHaveLength(1)
      const [received] = target.requests
      expect(verify(endpoint.secret, received!)).toMatchObject({ type: "shop.order.created", data: { orderId: "o_1", total: 12.5 } })
      expect(received!.headers).toMatchObject({
        "webhook-id": messageId,
        "x-tenant": "acme",
        "content-type": "application/json",
        "user-agent": "Trellis-Webhooks/1.0"
      })
      expect(received!.url).toBe("/hook")

      expect(yield* messageOf(h, messageId)).toEqual({ status: "delivered", attempts: 1, endpoint_id: endpoint.id })
      const attempts = yield* acme.service((s) => s.attempts(messageId, { limit: 10 }))
      expect(attempts.items).toEqual([
        expect.objectContaining({ messageId, trigger: "scheduled", statusCode: 200, responseBody: "thanks", error: null, succeeded: true })
      ])
      expect(yield* takeJobs(h.sql, "webhooks.deliver")).toEqual([])

      // The same job again (graphile-worker re-running it) finds nothing due and sends nothing.
      yield* runDelivery(h.context, acme.id, job!.data as DeliverJob)
      expect(target.requests).toHaveLength(1)
    })
  )

  it.scopedLive("retries exactly on the configured schedule through run_at, then gives up", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const target = yield* receiver((_, response) => response.writeHead(500).end("down"))
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      yield* acme.publishOrder("o_1")
      let [job] = yield* fanOutNow(h)
      const [messageId] = yield* messageIds(h)
      const waits: Array<number | null> = []
      for (let attempt = 1; attempt <= 8; attempt++) {
        expect(endpointOfJob(job!)).toBe(endpoint.id)
        yield* runDelivery(h.context, acme.id, job!.data as DeliverJob)
        // Before its time the wake-up finds the message not due: nothing is sent.
        yield* runDelivery(h.context, acme.id, job!.data as DeliverJob)
        expect(target.requests).toHaveLength(attempt)
        const next = yield* takeJobs(h.sql, "webhooks.deliver")
        if (attempt === 8) expect(next).toEqual([])
        else {
          expect(next).toHaveLength(1)
          expect(next[0]!.tenant).toBe(acme.id)
          waits.push(next[0]!.afterLastAttemptMs)
          job = next[0]
          yield* dueNow(h)
        }
      }
      const second = 1000
      expect(waits).toEqual([5, 300, 1800, 7200, 18_000, 36_000, 36_000].map((s) => s * second))
      expect(yield* messageOf(h, messageId)).toEqual({ status: "failed", attempts: 8, endpoint_id: endpoint.id })
      expect(new Set(target.requests.map((r) => r.headers["webhook-id"]))).toEqual(new Set([messageId]))
      expect(target.requests).toHaveLength(8)
      for (const request of target.requests) expect(verify(endpoint.secret, request)).toBeTruthy()
      const attempts = yield* acme.service((s) => s.attempts(messageId!, { limit: 10 }))
      expect(attempts.items.map((a) => [a.trigger, a.statusCode, a.succeeded])).toEqual(Array.from({ length: 8 }, () => ["scheduled", 500, false]))
    })
  )

  it.scopedLive("takes the delays and jitter from the options", () =>
    Effect.gen(function* () {
      const h = yield* app({ webhooks: { retryDelays: ["1 second", "2 seconds"], jitter: 0.2 }, hooks: { random: () => 0 } })
      const target = yield* receiver((_, response) => response.writeHead(502).end())
      const acme = org(h)
      yield* acme.create({ url: target.url })
      yield* acme.publishOrder("o_1")
      let [job] = yield* fanOutNow(h)
      const waits: Array<number | null> = []
      for (let attempt = 1; attempt <= 3; attempt++) {
        yield* runDelivery(h.context, acme.id, job!.data as DeliverJob)
        const next = yield* takeJobs(h.sql, "webhooks.deliver")
        waits.push(...next.map((n) => n.afterLastAttemptMs))
        job = next[0]
        yield* dueNow(h)
      }
      // random() = 0 is the largest jitter downwards: 20% early.
      expect(waits).toEqual([800, 1600])
      expect(target.requests).toHaveLength(3)
    })
  )

  it.scopedLive("honours Retry-After; a 410 disables the endpoint, publishes the event and abandons its queued messages", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const answers = [
        (response: ServerResponse) => response.writeHead(503, { "retry-after": "120" }).end(),
        (response: ServerResponse) => response.writeHead(410).end("gone")
      ]
      const target = yield* receiver((_, response) => answers.shift()!(response))
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      yield* acme.publishOrder("o_1")
      const [first] = yield* fanOutNow(h)
      const [waiting] = yield* messageIds(h)

      yield* runDelivery(h.context, acme.id, first!.data as DeliverJob)
      const [retry] = yield* takeJobs(h.sql, "webhooks.deliver")
      // The receiver's 120 s, not the schedule's 5 s.
      expect(retry!.afterLastAttemptMs).toBe(120_000)

      // Another message goes out while the first waits for its retry, and is answered 410.
      yield* acme.publishOrder("o_2")
      const [second] = yield* fanOutNow(h)
      yield* runDelivery(h.context, acme.id, second!.data as DeliverJob)
      expect(target.requests).toHaveLength(2)
      expect(yield* takeJobs(h.sql, "webhooks.deliver")).toEqual([])
      expect(yield* endpointOf(h, endpoint.id)).toMatchObject({ enabled: false, disabled_reason: "gone" })
      const [, gone] = yield* messageIds(h)
      expect(yield* messageOf(h, gone!)).toMatchObject({ status: "failed", attempts: 1 })
      const events = yield* disabledEvents(h)
      expect(events).toEqual([{ org_id: acme.id, payload: expect.objectContaining({ endpointId: endpoint.id, reason: "gone" }) }])

      // The message waiting for its retry fails without another attempt.
      expect(yield* messageOf(h, waiting!)).toMatchObject({ status: "failed", attempts: 1 })
      yield* dueNow(h)
      yield* runDelivery(h.context, acme.id, retry!.data as DeliverJob)
      expect(target.requests).toHaveLength(2)
      // New events no longer reach it.
      yield* acme.publishOrder("o_3")
      expect(yield* fanOutNow(h)).toEqual([])
    })
  )

  it.scopedLive("disables an endpoint whose every attempt failed for the configured time; a success ends the streak", () =>
    Effect.gen(function* () {
      const h = yield* app({ webhooks: { disableAfter: "1 hour" } })
      const failing = yield* receiver((_, response) => response.writeHead(500).end())
      const healthy = yield* receiver((_, response) => response.writeHead(204).end())
      const acme = org(h)
      const longFailing = yield* acme.create({ url: failing.url })
      const recentlyFailing = yield* acme.create({ url: `${failing.url}/recent` })
      const recovering = yield* acme.create({ url: healthy.url })
      yield* h.sql`update webhooks.endpoints set failing_since = now() - interval '61 minutes' where id in (${longFailing.id}, ${recovering.id})`
      yield* h.sql`update webhooks.endpoints set failing_since = now() - interval '59 minutes' where id = ${recentlyFailing.id}`
      yield* acme.publishOrder("o_1")
      yield* deliverAll(h)

      expect(yield* endpointOf(h, longFailing.id)).toMatchObject({ enabled: false, disabled_reason: "failing" })
      expect(yield* endpointOf(h, recentlyFailing.id)).toMatchObject({ enabled: true, disabled_reason: null })
      expect(yield* endpointOf(h, recovering.id)).toEqual({ enabled: true, disabled_reason: null, failing_since: null })
      const events = yield* disabledEvents(h)
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({ org_id: acme.id, payload: { endpointId: longFailing.id, reason: "failing" } })
      expect(events[0]!.payload.failingSince).not.toBeNull()
      // Only the endpoint still enabled and failing gets a retry.
      const retries = yield* takeJobs(h.sql, "webhooks.deliver")
      expect(retries.map(endpointOfJob)).toEqual([recentlyFailing.id])
    })
  )

  it.scopedLive("signs with both secrets while a rotation overlaps, and with the new one alone after", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const target = yield* receiver()
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      const rotated = yield* acme.service((s) => s.rotateSecret(endpoint.id))
      expect(rotated.secret).not.toBe(endpoint.secret)
      expect(rotated.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
      expect(yield* acme.service((s) => s.secret(endpoint.id))).toEqual(rotated)

      yield* acme.publishOrder("o_1")
      yield* deliverAll(h)
      const [during] = target.requests
      expect(String(during!.headers["webhook-signature"]).split(" ")).toHaveLength(2)
      expect(verify(endpoint.secret, during!)).toBeTruthy()
      expect(verify(rotated.secret, during!)).toBeTruthy()

      yield* h.sql`update webhooks.endpoints set previous_secret_expires_at = now() - interval '1 second' where id = ${endpoint.id}`
      yield* acme.publishOrder("o_2")
      yield* deliverAll(h)
      const after = target.requests[1]!
      expect(String(after.headers["webhook-signature"]).split(" ")).toHaveLength(1)
      expect(verify(rotated.secret, after)).toBeTruthy()
      expect(() => verify(endpoint.secret, after)).toThrow()
    })
  )

  it.scopedLive("ignores events without an org and events no endpoint subscribes to", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const acme = org(h)
      yield* acme.create({ url: "http://127.0.0.1:9/", eventTypes: ["shop.order.created"] })
      yield* acme.as(publish(InvoicePaid, { invoiceId: "i_1" }))
      yield* publish(OrderCreated, { orderId: "platform", total: 1 }).pipe(Effect.provide(h.context))
      expect(yield* fanOutNow(h)).toEqual([])
      const [count] = yield* h.sql<{ n: number }>`select count(*)::int as n from webhooks.messages`
      expect(count!.n).toBe(0)
    })
  )
})
