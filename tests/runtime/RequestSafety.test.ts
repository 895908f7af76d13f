import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { ops } from "../../plugins/ops/index.ts"
import { baseUrl, request, testAppLayer } from "../support/app.ts"
import { testDatabase } from "../support/database.ts"
import { testkit } from "../support/testkit.ts"

const opsPlugin = ops.make({ retentionDays: 30, pruneSchedule: "17 3 * * *" })

const app = (config: Parameters<typeof testAppLayer>[0]["config"] = {}) =>
  Effect.gen(function* () {
    const db = yield* testDatabase()
    const context = yield* Layer.build(
      testAppLayer({ databaseUrl: db.url, plugins: [opsPlugin, testkit], http: true, config })
    )
    return {
      base: yield* Effect.provide(baseUrl, context),
      sql: yield* Effect.provide(SqlClient.SqlClient, context)
    }
  })

const deadLetter = (sql: SqlClient.SqlClient, jobId: number) =>
  sql<{ id: string }>`
    insert into core.dead_letters (job_id, task_identifier, payload, reason, attempts, max_attempts, last_error, job_created_at)
    values (${jobId}, 'testkit.record', '{"data": {"label": "again"}}', 'exhausted', 3, 3, 'boom', now())
    returning id::text`.pipe(Effect.map((rows) => Number(rows[0]!.id)))

const jobCount = (sql: SqlClient.SqlClient) =>
  Effect.map(sql<{ n: number }>`select count(*)::int as n from graphile_worker._private_jobs`, (r) => r[0]!.n)

describe("request safety", () => {
  it.scopedLive("Idempotency-Key replays the first response, refuses another body, and 20 racing duplicates write once", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* app()
      const id = yield* deadLetter(sql, 1)
      const first = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { ids: [id] }, { "idempotency-key": "k-1" })
      expect(first.status).toBe(200)
      expect(first.json).toEqual({ count: 1 })
      const again = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { ids: [id] }, { "idempotency-key": "k-1" })
      expect(again.status).toBe(200)
      expect(again.json).toEqual({ count: 1 })
      expect(again.headers.get("idempotent-replayed")).toBe("true")
      expect(yield* jobCount(sql)).toBe(1)
      const otherBody = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { ids: [id + 1] }, { "idempotency-key": "k-1" })
      expect(otherBody.status).toBe(422)
      expect(otherBody.json._tag).toBe("UnprocessableEntity")

      const ids = yield* Effect.forEach([2, 3, 4], (jobId) => deadLetter(sql, jobId))
      const racing = yield* Effect.all(
        Array.from({ length: 20 }, () =>
          request(base, "POST", "/api/v1/ops/dead-letters/retry", { ids }, { "idempotency-key": "k-race" })
        ),
        { concurrency: "unbounded" }
      )
      expect(racing.every((r) => r.status === 200 || r.status === 409)).toBe(true)
      expect(racing.filter((r) => r.status === 200).every((r) => r.json.count === 3)).toBe(true)
      expect(yield* jobCount(sql)).toBe(4)
      const another = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { ids }, {
        "idempotency-key": "k-race",
        "x-api-key": "test-operator-key-0123456789"
      })
      expect(another.json).toEqual({ count: 3 })
    })
  )

  it.scopedLive("security headers, HSTS behind TLS, and CORS only for configured origins", () =>
    Effect.gen(function* () {
      const { base } = yield* app({ corsOrigins: ["https://app.example"] })
      const plain = yield* request(base, "GET", "/healthz")
      expect(plain.headers.get("x-frame-options")).toBe("DENY")
      expect(plain.headers.get("referrer-policy")).toBe("no-referrer")
      expect(plain.headers.get("strict-transport-security")).toBeNull()
      const behindTls = yield* request(base, "GET", "/healthz", undefined, { "x-forwarded-proto": "https" })
      expect(behindTls.headers.get("strict-transport-security")).toContain("max-age=")

      const preflight = yield* request(base, "OPTIONS", "/api/v1/ops/queues", undefined, {
        origin: "https://app.example",
        "access-control-request-method": "GET"
      })
      expect(preflight.status).toBe(204)
      expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example")
      const refused = yield* request(base, "OPTIONS", "/api/v1/ops/queues", undefined, {
        origin: "https://evil.example",
        "access-control-request-method": "GET"
      })
      expect(refused.status).toBe(403)
      expect(refused.headers.get("access-control-allow-origin")).toBeNull()
      const simple = yield* request(base, "GET", "/api/v1/ops/queues", undefined, { origin: "https://app.example" })
      expect(simple.headers.get("access-control-allow-origin")).toBe("https://app.example")
    })
  )

  it.scopedLive("authenticated callers are rate limited with 429, Retry-After and RateLimit headers", () =>
    Effect.gen(function* () {
      const { base } = yield* app({
        rateLimits: { authenticated: { limit: 3, windowSeconds: 60 }, anonymous: { limit: 3, windowSeconds: 60 }, plugins: {} }
      })
      const responses = yield* Effect.forEach([1, 2, 3, 4], () => request(base, "GET", "/api/v1/ops/health"))
      expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 429])
      expect(responses.map((r) => r.headers.get("ratelimit-remaining"))).toEqual(["2", "1", "0", "0"])
      expect(responses[0]!.headers.get("ratelimit-limit")).toBe("3")
      expect(Number(responses[3]!.headers.get("retry-after"))).toBeGreaterThan(0)
      expect(responses[3]!.json._tag).toBe("TooManyRequests")
    })
  )

  it.scopedLive("a plugin's own limit applies to every route it owns", () =>
    Effect.gen(function* () {
      const { base } = yield* app({
        rateLimits: {
          authenticated: { limit: 100, windowSeconds: 60 },
          anonymous: { limit: 100, windowSeconds: 60 },
          plugins: { ops: { limit: 2, windowSeconds: 60 } }
        }
      })
      const statuses = yield* Effect.forEach([1, 2, 3], () => request(base, "GET", "/api/v1/ops/queues"))
      expect(statuses.map((r) => r.status)).toEqual([200, 200, 429])
      expect(statuses[0]!.headers.get("ratelimit-limit")).toBe("2")
    })
  )
})
