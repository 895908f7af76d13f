import { Effect } from "effect"
import { createServer, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

/** What the channel does with the next request; `ok` once the script runs out. */
export type Behaviour = "ok" | "fail" | "hang" | "garbage"

export interface TestChannel {
  url: string
  /** Orders the channel holds, oldest first; tests append to it. */
  readonly orders: Array<unknown>
  /** Behaviours for the next requests, consumed one per request. */
  readonly script: Array<Behaviour>
  /** Each page starts this many orders before the cursor: a channel that repeats itself. */
  overlap: number
  requests: number
}

/**
 * A sales channel on 127.0.0.1 (port 0) speaking the import protocol: `GET /?limit=n[&cursor=c]`
 * answers `{ orders, nextCursor }`, the cursor being the index after the last order sent. It
 * fails (503), hangs (never answers) or sends garbage as scripted, and repeats orders across
 * pages when `overlap` is set.
 */
export const startChannel = (orders: Array<unknown> = []) =>
  Effect.acquireRelease(
    Effect.async<{ channel: TestChannel; close: () => void }>((resume) => {
      const hanging = new Set<ServerResponse>()
      const channel: TestChannel = { url: "", orders, script: [], overlap: 0, requests: 0 }
      const server = createServer((request, response) => {
        channel.requests++
        const behaviour = channel.script.shift() ?? "ok"
        if (behaviour === "hang") {
          hanging.add(response)
          response.on("close", () => hanging.delete(response))
          return
        }
        if (behaviour === "fail") {
          response.writeHead(503, { "content-type": "text/plain" }).end("temporarily unavailable")
          return
        }
        if (behaviour === "garbage") {
          response.writeHead(200, { "content-type": "application/json" }).end("{\"orders\": oops")
          return
        }
        const url = new URL(request.url ?? "/", "http://127.0.0.1")
        const limit = Number(url.searchParams.get("limit") ?? 10)
        const cursor = Number(url.searchParams.get("cursor") ?? 0)
        const start = Math.max(0, cursor - channel.overlap)
        const page = channel.orders.slice(start, start + limit)
        const body = { orders: page, nextCursor: String(Math.max(cursor, start + page.length)) }
        response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body))
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        channel.url = `http://127.0.0.1:${port}/orders`
        resume(
          Effect.succeed({
            channel,
            close: () => {
              for (const response of hanging) response.destroy()
              server.closeAllConnections()
              server.close()
            }
          })
        )
      })
    }),
    ({ close }) => Effect.sync(close)
  ).pipe(Effect.map(({ channel }) => channel))

let sequence = 0

/** An order as a channel sends it. */
export const channelOrder = (sku: string, qty = 1, overrides: Record<string, unknown> = {}) => ({
  externalId: `CH-${++sequence}`,
  customer: { name: `Buyer ${sequence}`, phone: "+91 98765 43210" },
  items: [{ sku, name: `Item ${sku}`, qty, price: 49900 }],
  currency: "INR",
  ...overrides
})
