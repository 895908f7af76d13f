import { HttpServerRequest } from "@effect/platform"
import { Context, Effect, Layer, Option } from "effect"
import { Redis } from "ioredis"
import { TooManyRequests } from "./Errors.ts"

export interface RateLimit {
  /** Requests allowed per window. */
  readonly limit: number
  readonly windowSeconds: number
}

export interface RateLimitDecision {
  readonly allowed: boolean
  readonly limit: number
  readonly remaining: number
  /** Seconds until the window resets. */
  readonly resetSeconds: number
}

/** Fixed-window counters: in Redis (atomic, shared by every instance) or in memory. */
export class RateLimiter extends Context.Tag("trellis/RateLimiter")<
  RateLimiter,
  { readonly hit: (key: string, limit: RateLimit) => Effect.Effect<RateLimitDecision> }
>() {}

const decide = (count: number, ttlMs: number, limit: RateLimit): RateLimitDecision => ({
  allowed: count <= limit.limit,
  limit: limit.limit,
  remaining: Math.max(0, limit.limit - count),
  resetSeconds: Math.max(1, Math.ceil(ttlMs / 1000))
})

export const layerRateLimiterMemory = Layer.sync(RateLimiter, () => {
  const windows = new Map<string, { count: number; resetAt: number }>()
  return {
    hit: (key, limit) =>
      Effect.sync(() => {
        const now = Date.now()
        let window = windows.get(key)
        if (!window || window.resetAt <= now) {
          // Expired windows are dropped as they are met; sweep now and then so keys seen once go too.
          if (windows.size > 10_000) for (const [k, w] of windows) if (w.resetAt <= now) windows.delete(k)
          window = { count: 0, resetAt: now + limit.windowSeconds * 1000 }
          windows.set(key, window)
        }
        window.count++
        return decide(window.count, window.resetAt - now, limit)
      })
  }
})

/** INCR and set the window's expiry in one round trip; returns the count and the ms left. */
const HIT_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}`

export const layerRateLimiterRedis = (options: { readonly url: string; readonly keyPrefix?: string }) =>
  Layer.scoped(
    RateLimiter,
    Effect.gen(function* () {
      const prefix = options.keyPrefix ?? "trellis:ratelimit:"
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(options.url, { maxRetriesPerRequest: 2 })),
        (redis) => Effect.promise(() => redis.quit().catch(() => redis.disconnect()))
      )
      return {
        hit: (key, limit) =>
          Effect.tryPromise(
            () => client.eval(HIT_SCRIPT, 1, `${prefix}${key}`, String(limit.windowSeconds * 1000)) as Promise<[number, number]>
          ).pipe(
            Effect.map(([count, ttl]) => decide(count, ttl, limit)),
            // A Redis outage must not take the API down with it: let the request through.
            Effect.catchAll((error) =>
              Effect.as(Effect.logWarning("rate limiter unavailable; allowing the request", error), {
                allowed: true,
                limit: limit.limit,
                remaining: limit.limit,
                resetSeconds: limit.windowSeconds
              })
            )
          )
      }
    })
  )

/**
 * Counts one request against `key`; adds the `RateLimit-*` headers to the response and, over
 * the limit, fails with 429 and `Retry-After`.
 */
export const enforceRateLimit = (key: string, limit: RateLimit) =>
  Effect.flatMap(RateLimiter, (limiter) => enforceRateLimitWith(limiter, key, limit))

/**
 * Headers that handling a request adds to its response, whatever the response turns out to
 * be (a 429 too). The HTTP layer provides a fresh record per request and copies it into the
 * response with its own headers: adding one is a property write, where a pre-response
 * handler is a fiber-ref update and another header copy per request.
 */
export class ResponseHeaders extends Context.Reference<ResponseHeaders>()("trellis/ResponseHeaders", {
  defaultValue: (): Record<string, string> | undefined => undefined
}) {}

/** Outside an HTTP request (no record provided) there is no response to add them to. */
const addResponseHeaders = (headers: Record<string, string>) =>
  Effect.map(ResponseHeaders, (bag) => {
    if (bag !== undefined) Object.assign(bag, headers)
  })

/** `enforceRateLimit` with the limiter in hand (no service lookup or provision per request). */
export const enforceRateLimitWith = (limiter: RateLimiter["Type"], key: string, limit: RateLimit) =>
  Effect.flatMap(limiter.hit(key, limit), (decision) => {
    const headers: Record<string, string> = {
      "ratelimit-limit": String(decision.limit),
      "ratelimit-remaining": String(decision.remaining),
      "ratelimit-reset": String(decision.resetSeconds)
    }
    if (decision.allowed) return addResponseHeaders(headers)
    headers["retry-after"] = String(decision.resetSeconds)
    return Effect.zipRight(
      addResponseHeaders(headers),
      new TooManyRequests({
        message: `rate limit of ${limit.limit} requests per ${limit.windowSeconds} s exceeded; retry in ${decision.resetSeconds} s`,
        retryAfterSeconds: decision.resetSeconds
      })
    )
  })

/**
 * The client's address as the HTTP layer determined it (behind trusted proxies, from
 * `X-Forwarded-For`); unset outside a request.
 */
export class ClientAddress extends Context.Reference<ClientAddress>()("trellis/ClientAddress", {
  defaultValue: (): Option.Option<string> => Option.none()
}) {}

/** The client's address, for limits on anonymous routes. */
export const clientAddress = Effect.gen(function* () {
  const resolved = yield* ClientAddress
  if (Option.isSome(resolved)) return resolved.value
  const request = yield* HttpServerRequest.HttpServerRequest
  return Option.getOrElse(request.remoteAddress, () => "unknown")
})
