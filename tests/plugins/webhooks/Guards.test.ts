import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { LookupAddress } from "node:dns"
import { withRedis } from "../../support/app.ts"
import { closedPort, receiver } from "./receiver.ts"
import { app, deliverAll, dueNow, endpointOfJob, fanOutNow, messageOf, org, runDelivery, takeJobs } from "./support.ts"
import type { DeliverJob } from "../../../plugins/webhooks/Dispatch.ts"

describe("webhooks delivery guards", () => {
  it.scopedLive("defers a delivery over the endpoint's rate limit past the window instead of sending it", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const target = yield* receiver()
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url, rateLimit: 1 })
      yield* acme.publishOrder("o_1")
      yield* acme.publishOrder("o_2")
      const [wakeUp] = yield* fanOutNow(h)
      const before = Date.now()
      yield* runDelivery(h.context, acme.id, wakeUp!.data as DeliverJob)
      expect(target.requests).toHaveLength(1)
      const sent = String(target.requests[0]!.headers["webhook-id"])
      const [held] = yield* h.sql<{ id: string; due_at: Date }>`select id, due_at from webhooks.messages where id <> ${sent}`
      // After the current 1 s window, spread over the next one (random() = 0.5 here), with a wake-up then.
      const wait = held!.due_at.getTime() - before
      expect(wait).toBeGreaterThanOrEqual(1000)
      expect(wait).toBeLessThan(2500)
      const [deferred] = yield* takeJobs(h.sql, "webhooks.deliver")
      expect(endpointOfJob(deferred!)).toBe(endpoint.id)
      expect(deferred!.tenant).toBe(acme.id)
      expect(deferred!.runAt.getTime()).toBe(held!.due_at.getTime())
      // A deferral is no attempt.
      expect(yield* messageOf(h, held!.id)).toMatchObject({ status: "pending", attempts: 0 })
      // Its time come, it goes out.
      yield* dueNow(h)
      yield* Effect.sleep("1100 millis")
      yield* runDelivery(h.context, acme.id, deferred!.data as DeliverJob)
      expect(target.requests.map((r) => r.headers["webhook-id"])).toEqual([sent, held!.id])
      expect(yield* messageOf(h, held!.id)).toMatchObject({ status: "delivered", attempts: 1 })
    })
  )

  it.scopedLive("shares an endpoint's rate limit between workers through Redis", () =>
    Effect.gen(function* () {
      const first = yield* app({ config: withRedis() })
      const second = yield* app({ config: withRedis(), db: first.db })
      const target = yield* receiver()
      const acme = org(first)
      const endpoint = yield* acme.create({ url: target.url, rateLimit: 1 })
      yield* acme.publishOrder("o_1")
      const [one] = yield* fanOutNow(first)
      yield* runDelivery(first.context, acme.id, one!.data as DeliverJob)
      yield* acme.publishOrder("o_2")
      const [two] = yield* fanOutNow(first)
      // The other process counts against the same window, so it defers instead of sending.
      yield* runDelivery(second.context, acme.id, two!.data as DeliverJob)
      expect(target.requests).toHaveLength(1)
      expect((yield* takeJobs(first.sql, "webhooks.deliver")).map(endpointOfJob)).toEqual([endpoint.id])
      const [held] = yield* first.sql<{ attempts: number; deferred: boolean }>`
        select attempts, due_at > now() as deferred from webhooks.messages where id <> ${String(target.requests[0]!.headers["webhook-id"])}`
      expect(held).toEqual({ attempts: 0, deferred: true })
    })
  )

  it.scopedLive("refuses blocked addresses when saved and, after DNS, when sent (pinned to the checked address)", () =>
    Effect.gen(function* () {
      const target = yield* receiver()
      const answers: Record<string, ReadonlyArray<LookupAddress>> = {
        "internal.example.test": [{ address: "10.1.2.3", family: 4 }],
        "metadata.example.test": [{ address: "169.254.169.254", family: 4 }],
        "hooks.example.test": [{ address: "127.0.0.1", family: 4 }]
      }
      const h = yield* app({ hooks: { random: () => 0.5, resolve: async (name) => answers[name] ?? [] } })
      const acme = org(h)
      for (const [url, reason] of [
        ["http://10.0.0.1/hook", "private"],
        ["http://169.254.169.254/latest/meta-data", "metadata"],
        ["http://[::1]:8080/", "loopback"],
        ["http://127.0.0.2/", "loopback"],
        ["ftp://example.com/", "scheme"],
        ["http://user:pw@example.com/", "credentials"]
      ] as const) {
        const error = yield* Effect.flip(acme.create({ url }))
        expect(error).toMatchObject({ _tag: "BadRequest", field: "url" })
        expect(error.message).toContain(reason)
      }
      const internal = yield* acme.create({ url: `http://internal.example.test:${target.port}/` })
      const metadata = yield* acme.create({ url: `http://metadata.example.test:${target.port}/` })
      const pinned = yield* acme.create({ url: `http://hooks.example.test:${target.port}/pinned` })
      const update = yield* Effect.flip(
        acme.service((s) => s.update(pinned.id, { url: "http://192.168.1.1/" }))
      )
      expect(update).toMatchObject({ _tag: "BadRequest", field: "url" })

      yield* acme.publishOrder("o_1")
      yield* deliverAll(h)
      expect(target.requests.map((r) => [r.url, r.headers.host])).toEqual([["/pinned", `hooks.example.test:${target.port}`]])
      const errors = yield* h.sql<{ endpoint_id: string; error: string; status_code: number | null }>`
        select m.endpoint_id, a.error, a.status_code from webhooks.attempts a join webhooks.messages m on m.id = a.message_id
         where not a.succeeded order by m.endpoint_id`
      expect(errors).toEqual(
        [
          { endpoint_id: internal.id, error: "blocked: internal.example.test resolves to 10.1.2.3, which is private", status_code: null },
          { endpoint_id: metadata.id, error: "blocked: metadata.example.test resolves to 169.254.169.254, which is metadata", status_code: null }
        ].sort((a, b) => a.endpoint_id.localeCompare(b.endpoint_id))
      )
    })
  )

  it.scopedLive("requires https unless the options allow plain http", () =>
    Effect.gen(function* () {
      const h = yield* app({ webhooks: { requireHttps: true } })
      const acme = org(h)
      const error = yield* Effect.flip(acme.create({ url: "http://example.com/hook" }))
      expect(error).toMatchObject({ _tag: "BadRequest", field: "url" })
      expect(error.message).toContain("https")
      expect((yield* acme.create({ url: "https://example.com/hook" })).url).toBe("https://example.com/hook")
    })
  )

  it.scopedLive("fails attempts on a timeout, a refused connection and a redirect (not followed)", () =>
    Effect.gen(function* () {
      const h = yield* app({ webhooks: { timeout: "300 millis" } })
      const elsewhere = yield* receiver()
      const stalling = yield* receiver((_, response) => {
        const timer = setTimeout(() => response.end("late"), 3_000)
        response.on("close", () => clearTimeout(timer))
      })
      const redirecting = yield* receiver((_, response) => response.writeHead(302, { location: elsewhere.url }).end())
      const port = yield* closedPort
      const acme = org(h)
      const slow = yield* acme.create({ url: stalling.url })
      const refused = yield* acme.create({ url: `http://127.0.0.1:${port}/` })
      const redirect = yield* acme.create({ url: redirecting.url })
      yield* acme.publishOrder("o_1")
      yield* deliverAll(h)

      const attempts = yield* h.sql<{ endpoint_id: string; error: string; status_code: number | null; succeeded: boolean; duration_ms: number }>`
        select m.endpoint_id, a.error, a.status_code, a.succeeded, a.duration_ms
          from webhooks.attempts a join webhooks.messages m on m.id = a.message_id`
      const byEndpoint = new Map(attempts.map((a) => [a.endpoint_id, a]))
      expect(byEndpoint.get(slow.id)!.error).toMatch(/^timeout: /)
      // An attempt without an answer still logs how long it took.
      expect(byEndpoint.get(slow.id)!.duration_ms).toBeGreaterThanOrEqual(250)
      expect(byEndpoint.get(slow.id)!.duration_ms).toBeLessThan(2_000)
      expect(byEndpoint.get(refused.id)!.error).toMatch(/^connection: .*ECONNREFUSED/)
      expect(byEndpoint.get(redirect.id)).toMatchObject({ status_code: 302, error: "HTTP 302", succeeded: false })
      expect(elsewhere.requests).toHaveLength(0)
      expect(yield* takeJobs(h.sql, "webhooks.deliver")).toHaveLength(3)
    })
  )

})
