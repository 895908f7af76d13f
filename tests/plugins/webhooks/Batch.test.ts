import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { publish } from "../../../core/Events.ts"
import { BATCH_SIZE, type DeliverJob, deliverTask, IN_FLIGHT, sweepTask } from "../../../plugins/webhooks/Dispatch.ts"
import { MessagesRepo } from "../../../plugins/webhooks/MessagesRepo.ts"
import { waitFor } from "../../support/wait.ts"
import { receiver } from "./receiver.ts"
import { type App, app, dueNow, endpointOfJob, fanOutNow, OrderCreated, org, runDelivery, takeJobs, verify } from "./support.ts"

const decodeJob = Schema.decodeUnknownSync(deliverTask.payload)

/** Per message: its status and attempts, with how many attempts the log holds for it. */
const ledger = (h: App) =>
  h.sql<{ id: string; status: string; attempts: number; logged: number; succeeded: number }>`
    select m.id, m.status, m.attempts,
           (select count(*) from webhooks.attempts a where a.message_id = m.id)::int as logged,
           (select count(*) from webhooks.attempts a where a.message_id = m.id and a.succeeded)::int as succeeded
      from webhooks.messages m order by m.seq`

const publishOrders = (acme: ReturnType<typeof org>, count: number) =>
  acme.as(Effect.forEach(Array.from({ length: count }, (_, i) => `o_${i}`), (orderId, total) => publish(OrderCreated, { orderId, total }), { discard: true }))

describe("webhooks batched delivery", () => {
  it.scopedLive("one wake-up sends every due message in batches, at most IN_FLIGHT at a time, each logged once", () =>
    Effect.gen(function* () {
      const h = yield* app()
      let open = 0
      let mostOpen = 0
      const target = yield* receiver((_, response) => {
        open++
        mostOpen = Math.max(mostOpen, open)
        // Answered a little later, so requests of a batch overlap.
        setTimeout(() => {
          open--
          response.writeHead(204).end()
        }, 5)
      })
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      const count = BATCH_SIZE * 2 + 50
      yield* publishOrders(acme, count)
      const wakeUps = yield* fanOutNow(h)
      // However many events: one wake-up for the endpoint.
      expect(wakeUps.map(endpointOfJob)).toEqual([endpoint.id])

      yield* runDelivery(h.context, acme.id, wakeUps[0]!.data as DeliverJob)
      expect(target.requests).toHaveLength(count)
      expect(new Set(target.requests.map((r) => r.headers["webhook-id"])).size).toBe(count)
      for (const request of target.requests.slice(0, 5)) expect(verify(endpoint.secret, request)).toBeTruthy()
      expect(mostOpen).toBeGreaterThan(1)
      expect(mostOpen).toBeLessThanOrEqual(IN_FLIGHT)
      const rows = yield* ledger(h)
      expect(rows).toHaveLength(count)
      expect(rows.every((r) => r.status === "delivered" && r.attempts === 1 && r.logged === 1 && r.succeeded === 1)).toBe(true)
      // Nothing left to wake up for.
      expect(yield* takeJobs(h.sql, "webhooks.deliver")).toEqual([])
    })
  )

  it.scopedLive("retries the failed items of a batch on their own schedule while the others are delivered", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const failing = new Set(["o_2", "o_5", "o_7"])
      const target = yield* receiver((request, response) => {
        const orderId = (JSON.parse(request.body) as { data: { orderId: string } }).data.orderId
        const fail = failing.delete(orderId)
        response.writeHead(fail ? 503 : 200).end()
      })
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      yield* publishOrders(acme, 10)
      const [wakeUp] = yield* fanOutNow(h)
      yield* runDelivery(h.context, acme.id, wakeUp!.data as DeliverJob)

      const afterFirst = yield* h.sql<{ order_id: string; status: string; attempts: number; retry_in_ms: number | null }>`
        select body::jsonb->'data'->>'orderId' as order_id, status, attempts,
               (extract(epoch from next_attempt_at - last_attempt_at) * 1000)::float8 as retry_in_ms
          from webhooks.messages order by seq`
      expect(afterFirst.filter((m) => m.status === "delivered")).toHaveLength(7)
      const pending = afterFirst.filter((m) => m.status === "pending")
      expect(pending.map((m) => m.order_id)).toEqual(["o_2", "o_5", "o_7"])
      // The schedule's first wait (5 s; random() = 0.5 here), each from its own attempt.
      for (const m of pending) expect(m).toMatchObject({ attempts: 1, retry_in_ms: 5000 })
      // One retry wake-up for the endpoint, at the earliest retry; a success in the batch keeps it from failing.
      const [retry] = yield* takeJobs(h.sql, "webhooks.deliver")
      expect(endpointOfJob(retry!)).toBe(endpoint.id)
      expect(retry!.afterLastAttemptMs).toBeGreaterThan(4_000)
      expect(retry!.afterLastAttemptMs).toBeLessThanOrEqual(5_000)
      const [streak] = yield* h.sql<{ failing_since: Date | null }>`select failing_since from webhooks.endpoints`
      expect(streak!.failing_since).toBeNull()

      yield* dueNow(h)
      yield* runDelivery(h.context, acme.id, retry!.data as DeliverJob)
      expect(target.requests).toHaveLength(13)
      const rows = yield* ledger(h)
      expect(rows.every((r) => r.status === "delivered" && r.succeeded === 1)).toBe(true)
      expect(rows.map((r) => r.logged)).toEqual([1, 1, 2, 1, 1, 2, 1, 2, 1, 1])
      expect(yield* takeJobs(h.sql, "webhooks.deliver")).toEqual([])
    })
  )

  it.scopedLive("sends again the messages a run leased and never settled, once the lease ends; the sweep wakes their endpoint", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const target = yield* receiver()
      const acme = org(h)
      const endpoint = yield* acme.create({ url: target.url })
      yield* publishOrders(acme, 3)
      const [wakeUp] = yield* fanOutNow(h)
      // A run that claims and then dies: its lease (here 300 ms) is all that is left of it.
      const claimed = yield* acme.as(Effect.flatMap(MessagesRepo, (repo) => repo.claim(endpoint.id, 100, 300)))
      expect(claimed).toHaveLength(3)

      // Another run skips the leased messages.
      yield* runDelivery(h.context, acme.id, wakeUp!.data as DeliverJob)
      expect(target.requests).toHaveLength(0)

      yield* Effect.sleep("400 millis")
      yield* runDelivery(h.context, acme.id, wakeUp!.data as DeliverJob)
      expect(target.requests).toHaveLength(3)
      expect((yield* ledger(h)).map((r) => [r.status, r.logged])).toEqual([
        ["delivered", 1],
        ["delivered", 1],
        ["delivered", 1]
      ])

      // A lease that ran out with no wake-up left: the sweep (platform work, every org) finds it.
      yield* publishOrders(acme, 1)
      yield* fanOutNow(h)
      yield* acme.as(Effect.flatMap(MessagesRepo, (repo) => repo.claim(endpoint.id, 100, 0)))
      yield* sweepTask.handler({}).pipe(Effect.provide(h.context))
      expect(yield* takeJobs(h.sql, "webhooks.deliver")).toEqual([])
      yield* h.sql`update webhooks.messages set due_at = now() - interval '2 minutes' where status = 'pending'`
      yield* sweepTask.handler({}).pipe(Effect.provide(h.context))
      const [swept] = yield* takeJobs(h.sql, "webhooks.deliver")
      expect(swept).toMatchObject({ tenant: acme.id, data: { endpointId: endpoint.id } })
      yield* runDelivery(h.context, acme.id, swept!.data as DeliverJob)
      expect(target.requests).toHaveLength(4)
      expect((yield* ledger(h)).every((r) => r.status === "delivered" && r.logged === 1)).toBe(true)
    })
  )

  it.scopedLive("a wake-up for an endpoint already running here joins that run instead of starting another", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const release = yield* Deferred.make<void>()
      const target = yield* receiver((_, response) => {
        Effect.runFork(Effect.andThen(Deferred.await(release), () => response.writeHead(200).end()))
      })
      const acme = org(h)
      yield* acme.create({ url: target.url })
      yield* publishOrders(acme, 1)
      const [wakeUp] = yield* fanOutNow(h)
      const running = yield* Effect.fork(runDelivery(h.context, acme.id, wakeUp!.data as DeliverJob))
      yield* waitFor("the first request", Effect.sync(() => (target.requests.length === 1 ? true : undefined)))

      // Fanned out while the run waits on its receiver: no new wake-up, the run takes it.
      yield* acme.as(publish(OrderCreated, { orderId: "late", total: 1 }))
      expect(yield* fanOutNow(h)).toEqual([])
      // So does a wake-up job that runs meanwhile: it ends at once, leaving the message to the run.
      yield* runDelivery(h.context, acme.id, wakeUp!.data as DeliverJob)
      expect(target.requests).toHaveLength(1)

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(running)
      expect(target.requests).toHaveLength(2)
      expect((yield* ledger(h)).map((r) => [r.status, r.logged])).toEqual([
        ["delivered", 1],
        ["delivered", 1]
      ])
    })
  )

  it.scopedLive("through the worker, delivers 600 events to one endpoint, each message once and logged once", () =>
    Effect.gen(function* () {
      const h = yield* app({ worker: true, config: { pollInterval: 50 } })
      const target = yield* receiver()
      const acme = org(h)
      yield* acme.create({ url: target.url })
      const count = 600
      yield* publishOrders(acme, count)
      yield* waitFor(
        "every attempt logged",
        Effect.map(h.sql<{ n: number }>`select count(*)::int as n from webhooks.attempts`, (rows) => (rows[0]!.n >= count ? true : undefined)),
        60_000
      )
      // Settled work stays settled: nothing more arrives or is logged.
      yield* Effect.sleep("300 millis")
      expect(target.requests).toHaveLength(count)
      expect(new Set(target.requests.map((r) => r.headers["webhook-id"])).size).toBe(count)
      const rows = yield* ledger(h)
      expect(rows).toHaveLength(count)
      expect(rows.every((r) => r.status === "delivered" && r.attempts === 1 && r.logged === 1)).toBe(true)
    })
  )

  it.scopedLive("a delivery job queued before the upgrade, naming a message, wakes that message's endpoint", () =>
    Effect.gen(function* () {
      const h = yield* app()
      const target = yield* receiver()
      const acme = org(h)
      yield* acme.create({ url: target.url })
      yield* publishOrders(acme, 1)
      yield* fanOutNow(h)
      const [message] = yield* h.sql<{ id: string }>`select id from webhooks.messages`
      yield* runDelivery(h.context, acme.id, decodeJob({ _tag: "scheduled", messageId: message!.id, attempt: 1 }))
      expect(target.requests.map((r) => r.headers["webhook-id"])).toEqual([message!.id])
    })
  )
})
