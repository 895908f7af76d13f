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
        // A pooled socket would skip the lookup; each attempt connects to its own checked address.
        agent: false,
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
