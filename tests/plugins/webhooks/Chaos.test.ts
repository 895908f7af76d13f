import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Webhook } from "standardwebhooks"
import { publish } from "../../../core/Events.ts"
import { waitFor } from "../../support/wait.ts"
import { receiver } from "./receiver.ts"
import { app, OrderCreated, org } from "./support.ts"

const EVENTS = 1_000
const FAILURE_RATE = 0.3
// 15 attempts: a message failing every one of them has odds of 0.3^15, about 1 in 70 million.
const RETRY_DELAYS = Array.from({ length: 14 }, () => "50 millis")

describe("webhooks under a flaky receiver", () => {
  it.scopedLive(
    "delivers every one of 1,000 events at least once to a receiver failing 30% of requests",
    () =>
      Effect.gen(function* () {
        // More jobs in flight than the default 10: deliveries wait on the database more than on CPU,
        // and this test is about what arrives, not how fast.
        const h = yield* app({
          worker: true,
          webhooks: { retryDelays: RETRY_DELAYS },
          config: { pollInterval: 50, workerConcurrency: 20, databasePoolMax: 30 }
        })
        const accepted = new Map<string, { body: string; headers: Record<string, string> }>()
        let refused = 0
        const target = yield* receiver((request, response) => {
          if (Math.random() < FAILURE_RATE) {
            refused++
            // Half answer 500, half lose the connection without an answer.
            return refused % 2 === 0 ? response.writeHead(500).end() : response.destroy()
          }
          const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)]))
          accepted.set(headers["webhook-id"]!, { body: request.body, headers })
          response.writeHead(200).end()
        })
        const acme = org(h)
        const endpoint = yield* acme.create({ url: target.url })
        const published = Array.from({ length: EVENTS }, (_, i) => `o_${i}`)
        yield* acme.as(Effect.forEach(published, (orderId, total) => publish(OrderCreated, { orderId, total }), { discard: true }))

        yield* waitFor("every message delivered", Effect.sync(() => (accepted.size >= EVENTS ? true : undefined)), 90_000, 100)
        const [counts] = yield* waitFor(
          "the attempt log to catch up",
          Effect.map(
            h.sql<{ delivered: number; all: number }>`
              select count(*) filter (where status = 'delivered')::int as delivered, count(*)::int as all from webhooks.messages`,
            (rows) => (rows[0]!.delivered === EVENTS ? rows : undefined)
          ),
          30_000
        )
        expect(counts!.all).toBe(EVENTS)

        const webhook = new Webhook(endpoint.secret)
        const delivered = [...accepted.values()].map(({ body, headers }) => webhook.verify(body, headers) as { data: { orderId: string } })
        expect(accepted.size).toBe(EVENTS)
        expect(new Set(delivered.map((d) => d.data.orderId))).toEqual(new Set(published))
        expect(refused).toBeGreaterThan(0)
        const [failedAttempts] = yield* h.sql<{ n: number }>`select count(*)::int as n from webhooks.attempts where not succeeded`
        expect(failedAttempts!.n).toBeGreaterThan(0)
      }),
    150_000
  )
})
