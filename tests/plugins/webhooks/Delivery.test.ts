import { describe, expect, it } from "@effect/vitest"
import type { LookupAddress } from "node:dns"
import http from "node:http"
import { Deferred, Effect } from "effect"
import { Webhook } from "standardwebhooks"
import { type DeliverOptions, deliver } from "../../../plugins/webhooks/Delivery.ts"
import { generateSecret, headers } from "../../../plugins/webhooks/Signature.ts"
import { closedPort, receiver } from "./receiver.ts"

const local = { allow: ["127.0.0.1/32"], requireHttps: false, headers: {}, body: "{}" } satisfies Omit<DeliverOptions, "url">

describe("deliver", () => {
  it.scopedLive("POSTs the signed JSON body and returns status, duration and response body", () =>
    Effect.gen(function* () {
      const secret = generateSecret()
      const body = JSON.stringify({ type: "order.created", timestamp: new Date().toISOString(), data: { id: "o_1" } })
      const signed = headers({ msgId: "msg_1", timestamp: Math.floor(Date.now() / 1000), body, secrets: [secret] })
      const target = yield* receiver((_, response) => response.writeHead(200, { "content-type": "text/plain" }).end("thanks"))
      const result = yield* deliver({ ...local, url: `${target.url}/hooks?x=1`, body, headers: signed })
      expect(result).toEqual({ status: 200, durationMs: expect.any(Number), responseBody: "thanks" })
      expect(result.durationMs).toBeGreaterThanOrEqual(0)
      expect(result.durationMs).toBeLessThan(5_000)
      const [received] = target.requests
      expect(target.requests).toHaveLength(1)
      expect(received).toMatchObject({ method: "POST", url: "/hooks?x=1", body })
      expect(received!.headers).toMatchObject({
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(body)),
        host: `127.0.0.1:${target.port}`
      })
      const asReceived = Object.fromEntries(Object.entries(received!.headers).map(([k, v]) => [k, String(v)]))
      expect(new Webhook(secret).verify(received!.body, asReceived)).toEqual(JSON.parse(body))
    })
  )

  it.scopedLive("returns error statuses as results", () =>
    Effect.gen(function* () {
      const target = yield* receiver((request, response) => {
        const status = Number(request.url.slice(1))
        response.writeHead(status).end(`status ${status}`)
      })
      expect(yield* deliver({ ...local, url: `${target.url}/500` })).toMatchObject({ status: 500, responseBody: "status 500" })
      expect(yield* deliver({ ...local, url: `${target.url}/410` })).toMatchObject({ status: 410, responseBody: "status 410" })
    })
  )

  it.scopedLive("aborts a slow receiver at the timeout", () =>
    Effect.gen(function* () {
      const closed = yield* Deferred.make<void>()
      const target = yield* receiver((_, response) => {
        const timer = setTimeout(() => response.end("late"), 2_000)
        response.on("close", () => {
          clearTimeout(timer)
          Deferred.unsafeDone(closed, Effect.void)
        })
      })
      const startedAt = Date.now()
      const error = yield* Effect.flip(deliver({ ...local, url: target.url, timeoutMs: 300 }))
      const elapsed = Date.now() - startedAt
      expect(error).toMatchObject({ _tag: "DeliveryError", kind: "timeout" })
      expect(elapsed).toBeGreaterThanOrEqual(250)
      expect(elapsed).toBeLessThan(1_000)
      expect(target.requests).toHaveLength(1)
      // The connection is torn down rather than left to finish in the background.
      yield* Deferred.await(closed).pipe(Effect.timeoutFail({ duration: "1 second", onTimeout: () => new Error("the receiver's connection stayed open") }))
    })
  )

  it.scopedLive("does not follow redirects", () =>
    Effect.gen(function* () {
      const elsewhere = yield* receiver()
      const target = yield* receiver((_, response) => response.writeHead(302, { location: `${elsewhere.url}/stolen` }).end())
      const result = yield* deliver({ ...local, url: target.url })
      expect(result.status).toBe(302)
      yield* Effect.sleep("100 millis")
      expect(target.requests).toHaveLength(1)
      expect(elsewhere.requests).toHaveLength(0)
    })
  )

  it.scopedLive("parses Retry-After as delta-seconds or an HTTP-date", () =>
    Effect.gen(function* () {
      const retryAfter: Record<string, string> = {
        "/seconds": "120",
        "/date": new Date(Date.now() + 90_000).toUTCString(),
        "/past": new Date(Date.now() - 90_000).toUTCString(),
        "/junk": "soon"
      }
      const target = yield* receiver((request, response) => {
        const value = retryAfter[request.url]
        response.writeHead(request.url === "/seconds" ? 429 : 503, value === undefined ? {} : { "retry-after": value }).end()
      })
      expect(yield* deliver({ ...local, url: `${target.url}/seconds` })).toMatchObject({ status: 429, retryAfterSeconds: 120 })
      const dated = yield* deliver({ ...local, url: `${target.url}/date` })
      expect(dated.status).toBe(503)
      expect(dated.retryAfterSeconds).toBeGreaterThanOrEqual(88)
      expect(dated.retryAfterSeconds).toBeLessThanOrEqual(91)
      expect((yield* deliver({ ...local, url: `${target.url}/past` })).retryAfterSeconds).toBe(0)
      expect(yield* deliver({ ...local, url: `${target.url}/junk` })).not.toHaveProperty("retryAfterSeconds")
      expect(yield* deliver({ ...local, url: `${target.url}/none` })).not.toHaveProperty("retryAfterSeconds")
    })
  )

  it.scopedLive("keeps only the first 4096 bytes of a large response", () =>
    Effect.gen(function* () {
      const large = "0123456789abcdef".repeat(6400)
      expect(large).toHaveLength(102_400)
      const endlessClosed = yield* Deferred.make<void>()
      const target = yield* receiver((request, response) => {
        if (request.url !== "/endless") return response.writeHead(200).end(large)
        // Never ends on its own: only the client giving up on the body stops it.
        response.writeHead(200)
        const timer = setInterval(() => response.write("x".repeat(1024)), 10)
        response.on("close", () => {
          clearInterval(timer)
          Deferred.unsafeDone(endlessClosed, Effect.void)
        })
      })
      const result = yield* deliver({ ...local, url: target.url })
      expect(result.responseBody).toHaveLength(4096)
      expect(result.responseBody).toBe(large.slice(0, 4096))
      expect((yield* deliver({ ...local, url: target.url, maxResponseBytes: 10 })).responseBody).toBe("0123456789")
      expect((yield* deliver({ ...local, url: `${target.url}/endless`, timeoutMs: 5_000 })).responseBody).toBe("x".repeat(4096))
      yield* Deferred.await(endlessClosed).pipe(Effect.timeoutFail({ duration: "1 second", onTimeout: () => new Error("the response stream was left open") }))
    })
  )

  it.scopedLive("reports a refused connection", () =>
    Effect.gen(function* () {
      const port = yield* closedPort
      const error = yield* Effect.flip(deliver({ ...local, url: `http://127.0.0.1:${port}/` }))
      expect(error).toMatchObject({ _tag: "DeliveryError", kind: "connection" })
      expect(error.message).toContain("ECONNREFUSED")
    })
  )

  it.scopedLive("refuses blocked and invalid URLs without sending anything", () =>
    Effect.gen(function* () {
      const target = yield* receiver()
      const kind = (options: DeliverOptions) => Effect.map(Effect.flip(deliver(options)), (e) => e.kind)
      expect(yield* kind({ ...local, url: target.url, allow: [] })).toBe("blocked")
      expect(yield* kind({ ...local, url: target.url, requireHttps: true })).toBe("blocked")
      expect(yield* kind({ ...local, url: target.url.replace("http://", "http://user:pw@") })).toBe("blocked")
      expect(yield* kind({ ...local, url: target.url.replace("http:", "ftp:") })).toBe("invalid_url")
      expect(yield* kind({ ...local, url: "::not a url" })).toBe("invalid_url")
      expect(target.requests).toHaveLength(0)
    })
  )

  it.scopedLive("connects to the checked address, resolving the name only once", () =>
    Effect.gen(function* () {
      const target = yield* receiver((_, response) => response.end("pinned"))
      // A rebinding attacker's DNS: a harmless answer for the check, an internal one afterwards.
      const answers: Array<ReadonlyArray<LookupAddress>> = [[{ address: "127.0.0.1", family: 4 }]]
      const calls: Array<string> = []
      const resolve = async (hostname: string) => {
        calls.push(hostname)
        return answers[calls.length - 1] ?? [{ address: "10.0.0.1", family: 4 }]
      }
      const url = `http://hooks.example.test:${target.port}/hook`
      const result = yield* deliver({ ...local, url, resolve })
      expect(result).toMatchObject({ status: 200, responseBody: "pinned" })
      expect(calls).toEqual(["hooks.example.test"])
      // The name stays the request's: virtual hosts (and TLS SNI) see the original host.
      expect(target.requests.map((r) => r.headers.host)).toEqual([`hooks.example.test:${target.port}`])

      const rebound = yield* Effect.flip(deliver({ ...local, url, resolve }))
      expect(rebound).toMatchObject({ kind: "blocked" })
      expect(calls).toHaveLength(2)
      expect(target.requests).toHaveLength(1)
    })
  )

  it.scopedLive("keeps connections per checked address, and lets a slow answer outlast the idle timeout", () =>
    Effect.gen(function* () {
      const ports: Array<number> = []
      let delayMs = 0
      const target = yield* receiver((_, response) => {
        ports.push(response.socket!.remotePort!)
        setTimeout(() => response.end("ok"), delayMs)
      })
      const url = `http://hooks.example.test:${target.port}/`
      const to = (address: string) => async () => [{ address, family: 4 }]
      const first = yield* deliver({ ...local, url, resolve: to("127.0.0.1") })
      const second = yield* deliver({ ...local, url, resolve: to("127.0.0.1") })
      expect([first.status, second.status]).toEqual([200, 200])
      expect(new Set(ports).size).toBe(1)
      // Another checked address (the same name and port) never borrows that connection.
      const other = http.createServer((_, response) => response.end("other"))
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void other.listen(target.port, "127.0.0.2", () => resume(Effect.void))),
        () => Effect.async<void>((resume) => void other.close(() => resume(Effect.void)).closeAllConnections())
      )
      const elsewhere = yield* deliver({ ...local, url, allow: ["127.0.0.0/8"], resolve: to("127.0.0.2") })
      expect(elsewhere.responseBody).toBe("other")
      expect(new Set(ports).size).toBe(1)
      delayMs = 2_500
      expect(yield* deliver({ ...local, url, resolve: to("127.0.0.1") })).toMatchObject({ status: 200, responseBody: "ok" })
    })
  )
})
