import http from "node:http"
import https from "node:https"
import { Clock, Duration, Effect, Schema } from "effect"
import { checkUrl, pinnedLookup, type PinnedTarget, type Resolve, type ResolveFailed, type UrlRejected } from "./Ssrf.ts"

export class DeliveryError extends Schema.TaggedError<DeliveryError>()("DeliveryError", {
  kind: Schema.Literal("blocked", "timeout", "connection", "invalid_url"),
  message: Schema.String
}) {}

/** Any HTTP answer, 3xx and 5xx included: judging it is the caller's business. */
export interface DeliveryResult {
  readonly status: number
  readonly durationMs: number
  /** The first `maxResponseBytes` of the body, for the attempt log. */
  readonly responseBody: string
  readonly retryAfterSeconds?: number
}

export interface DeliverOptions {
  readonly url: string
  readonly body: string
  /** The signature headers; content-type and content-length are set here. */
  readonly headers: Readonly<Record<string, string>>
  /** For the whole attempt: resolving, connecting, and reading the response. */
  readonly timeoutMs?: number
  readonly allow: ReadonlyArray<string>
  readonly requireHttps: boolean
  readonly maxResponseBytes?: number
  readonly resolve?: Resolve
}

/** `Retry-After` is either delta-seconds or an HTTP-date (RFC 9110 section 10.2.3). */
const parseRetryAfter = (value: string | undefined, nowMs: number): number | undefined => {
  if (value === undefined) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text)
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - nowMs) / 1000))
}

const rejected = (error: UrlRejected | ResolveFailed): DeliveryError => {
  if (error._tag === "ResolveFailed") return new DeliveryError({ kind: "connection", message: `cannot resolve ${error.hostname}: ${error.message}` })
  const kind = error.reason === "invalid_url" || error.reason === "scheme" ? "invalid_url" : "blocked"
  return new DeliveryError({ kind, message: error.message })
}

/** Destinations whose connections are kept; the least recently used beyond this are let go. */
const MAX_AGENTS = 1_000
/** Shorter than receivers' own idle timeouts (Node's 5 s, nginx's 75 s), so a kept socket is rarely closed under a request. */
const IDLE_SOCKET_MS = 2_000

const agents = new Map<string, http.Agent>()

/**
 * A keep-alive agent per checked destination: its sockets all connect to the one address the
 * check approved (through the pinned lookup), so reusing them cannot lead anywhere else,
 * and a busy endpoint is spared a TCP (and TLS) handshake per message.
 */
const agentFor = (target: PinnedTarget): http.Agent => {
  const key = `${target.url.protocol}//${target.hostname}:${target.url.port}@${target.address}`
  let agent = agents.get(key)
  if (agent !== undefined) {
    agents.delete(key)
  } else {
    const options = { keepAlive: true, maxFreeSockets: 32, timeout: IDLE_SOCKET_MS }
    agent = target.url.protocol === "https:" ? new https.Agent(options) : new http.Agent(options)
    // Not destroyed: requests may still be using it; its idle sockets close on their own.
    if (agents.size >= MAX_AGENTS) agents.delete(agents.keys().next().value!)
  }
  agents.set(key, agent)
  return agent
}

const send = (target: PinnedTarget, options: DeliverOptions, maxResponseBytes: number, startedAt: number) =>
  Effect.async<DeliveryResult, DeliveryError>((resume, signal) => {
    let settled = false
    const settle = (effect: Effect.Effect<DeliveryResult, DeliveryError>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    const request = (target.url.protocol === "https:" ? https : http).request(
      target.url,
      {
        method: "POST",
        headers: {
          ...options.headers,
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(options.body))
        },
        lookup: pinnedLookup(target),
        agent: agentFor(target),
        // Interruption (the timeout) aborts this signal, which destroys the socket.
        signal
      },
      (response) => {
        const chunks: Array<Buffer> = []
        let size = 0
        const finish = () =>
          settle(
            Effect.map(Clock.currentTimeMillis, (now) => {
              const retryAfterSeconds = parseRetryAfter(response.headers["retry-after"], now)
              return {
                status: response.statusCode ?? 0,
                durationMs: now - startedAt,
                responseBody: Buffer.concat(chunks).toString("utf8"),
                ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds })
              }
            })
          )
        response.on("data", (chunk: Buffer) => {
          const kept = chunk.subarray(0, maxResponseBytes - size)
          chunks.push(kept)
          size += kept.length
          if (size >= maxResponseBytes) {
            finish()
            response.destroy()
          }
        })
        response.on("end", finish)
        // A body cut short still leaves the status line, which is the receiver's answer.
        response.on("error", finish)
        response.on("close", finish)
      }
    )
    request.on("error", (error) => settle(Effect.fail(new DeliveryError({ kind: "connection", message: error.message }))))
    // Without it Nagle's algorithm holds segments back for the receiver's delayed ACK
    // (2.4 ms instead of 0.8 ms per delivery measured on loopback).
    request.setNoDelay(true)
    request.end(options.body)
  })

/**
 * One delivery attempt: checks the URL against the SSRF rules, then POSTs to the checked
 * address. Redirects are not followed (the 3xx comes back as the status), since the target
 * of a redirect has not been checked.
 */
export const deliver = (options: DeliverOptions): Effect.Effect<DeliveryResult, DeliveryError> => {
  const timeoutMs = options.timeoutMs ?? 15_000
  return Effect.gen(function* () {
    const startedAt = yield* Clock.currentTimeMillis
    const target = yield* checkUrl(options.url, options).pipe(Effect.mapError(rejected))
    return yield* send(target, options, options.maxResponseBytes ?? 4096, startedAt)
  }).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () => new DeliveryError({ kind: "timeout", message: `no complete response within ${timeoutMs} ms` })
    })
  )
}
