import SwaggerParser from "@apidevtools/swagger-parser"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { enqueue } from "../../core/Jobs.ts"
import { ops } from "../../plugins/ops/index.ts"
import http from "node:http"
import { ADMIN_KEY, baseUrl, request, testAppLayer, withRedis } from "../support/app.ts"
import { testDatabase } from "../support/database.ts"
import { recordTask, testkit } from "../support/testkit.ts"
import { waitFor } from "../support/wait.ts"

const opsPlugin = ops.make({ retentionDays: 30, pruneSchedule: "17 3 * * *" })

const server = (options: { worker?: boolean; redis?: boolean } = {}) =>
  Effect.gen(function* () {
    const db = yield* testDatabase()
    const context = yield* Layer.build(
      testAppLayer({
        databaseUrl: db.url,
        plugins: [opsPlugin, testkit],
        http: true,
        worker: options.worker ?? false,
        ...(options.redis ? { config: withRedis() } : {})
      })
    )
    return { context, base: yield* Effect.provide(baseUrl, context) }
  })

/**
 * POSTs with node:http, which reads the response even when the server answers before the
 * whole body is sent (fetch reports that as a reset).
 */
/** A POST with a declared length, or streamed in chunks of 64 KiB with none (`chunked`). */
const rawPost = (url: string, body: string, options: { readonly chunked?: boolean } = {}) =>
  Effect.async<{ status: number; body: string }, Error>((resume) => {
    const req = http.request(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-api-key": ADMIN_KEY,
        ...(options.chunked ? { "transfer-encoding": "chunked" } : { "content-length": Buffer.byteLength(body) })
      }
    })
    req.on("response", (res) => {
      let text = ""
      res.on("data", (chunk: Buffer) => (text += chunk.toString()))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body: text })))
    })
    // A server answering before the whole body is sent may close the socket under the rest of
    // it: the answer, when one came, is what counts.
    let answered = false
    req.on("response", () => (answered = true))
    req.on("error", (error) => answered || resume(Effect.fail(error)))
    if (options.chunked) {
      for (let at = 0; at < body.length; at += 65_536) req.write(body.slice(at, at + 65_536))
      req.end()
    } else {
      req.end(body)
    }
  }).pipe(Effect.timeout("10 seconds"))

describe("http", () => {
  it.scopedLive("/healthz, /readyz (database, redis, migrations) and the request id", () =>
    Effect.gen(function* () {
      const { base } = yield* server({ redis: true })
      const health = yield* request(base, "GET", "/healthz")
      expect(health.status).toBe(200)
      const ready = yield* request(base, "GET", "/readyz", undefined, { "x-request-id": "req-123" })
      expect(ready.status).toBe(200)
      expect(ready.json.checks).toEqual({
        database: { ok: true },
        cache_redis: { ok: true },
        migrations: { ok: true }
      })
      expect(ready.headers.get("x-request-id")).toBe("req-123")
      expect(ready.headers.get("x-content-type-options")).toBe("nosniff")
      const generated = yield* request(base, "GET", "/healthz", undefined, { "x-request-id": "bad id with spaces" })
      expect(generated.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
    })
  )

  it.scopedLive("unknown routes are 404, wrong methods 405, missing credentials 401, all JSON", () =>
    Effect.gen(function* () {
      const { base } = yield* server()
      const missing = yield* request(base, "GET", "/api/v1/nope")
      expect(missing.status).toBe(404)
      expect(missing.json).toEqual({ _tag: "NotFound", message: "no route GET /api/v1/nope" })
      const wrongMethod = yield* request(base, "DELETE", "/api/v1/ops/queues")
      expect(wrongMethod.status).toBe(405)
      expect(wrongMethod.headers.get("allow")).toBe("GET")
      expect(wrongMethod.json._tag).toBe("MethodNotAllowed")
      const anonymous = yield* request(base, "GET", "/api/v1/ops/queues", undefined, { "x-api-key": "" })
      expect(anonymous.status).toBe(401)
      expect(anonymous.json._tag).toBe("Unauthorized")
      const wrongKey = yield* request(base, "GET", "/api/v1/ops/queues", undefined, { "x-api-key": "not-the-key" })
      expect(wrongKey.status).toBe(401)
      const bearer = yield* request(base, "GET", "/api/v1/ops/health", undefined, {
        "x-api-key": "",
        authorization: "Bearer test-operator-key-0123456789"
      })
      expect(bearer.status).toBe(200)
    })
  )

  it.scopedLive("a malformed body gets a 400 naming the field", () =>
    Effect.gen(function* () {
      const { base } = yield* server()
      const badIds = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { ids: ["x"] })
      expect(badIds.status).toBe(400)
      expect(badIds.json._tag).toBe("HttpApiDecodeError")
      expect(badIds.json.issues.some((i: { path: Array<unknown> }) => i.path.includes("ids"))).toBe(true)
      const notJson = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", "{not json")
      expect(notJson.status).toBe(400)
      const badParam = yield* request(base, "GET", "/api/v1/ops/dead-letters?limit=9999")
      expect(badParam.status).toBe(400)
      expect(badParam.json.issues[0].path).toEqual(["limit"])
      const badId = yield* request(base, "GET", "/api/v1/ops/dead-letters/abc")
      expect(badId.status).toBe(400)
      expect(badId.json.issues[0].path).toEqual(["id"])
    })
  )

  it.scopedLive("a body over the size limit is 413", () =>
    Effect.gen(function* () {
      const { base } = yield* server()
      const body = JSON.stringify({ ids: Array.from({ length: 200_000 }, (_, i) => i + 1) })
      const declared = yield* rawPost(`${base}/api/v1/ops/dead-letters/discard`, body)
      expect(declared.status).toBe(413)
      expect(JSON.parse(declared.body)._tag).toBe("PayloadTooLarge")
      // Without a declared length, the limit is found while reading: the same 413.
      const streamed = yield* rawPost(`${base}/api/v1/ops/dead-letters/discard`, body, { chunked: true })
      expect(streamed.status).toBe(413)
      expect(JSON.parse(streamed.body)._tag).toBe("PayloadTooLarge")
      // Under the limit it is read and decoded as usual.
      const small = yield* rawPost(`${base}/api/v1/ops/dead-letters/discard`, JSON.stringify({ ids: [1] }))
      expect(small.status).toBe(200)
      const smallStreamed = yield* rawPost(`${base}/api/v1/ops/dead-letters/discard`, JSON.stringify({ ids: [1] }), { chunked: true })
      expect(smallStreamed.status).toBe(200)
    })
  )

  it.scopedLive("/openapi.json is a valid OpenAPI 3.1 document with both security schemes", () =>
    Effect.gen(function* () {
      const { base } = yield* server()
      const spec = yield* request(base, "GET", "/openapi.json")
      expect(spec.status).toBe(200)
      expect(spec.json.openapi).toBe("3.1.0")
      yield* Effect.promise(() => SwaggerParser.validate(structuredClone(spec.json)))
      expect(Object.keys(spec.json.paths)).toContain("/api/v1/ops/dead-letters/{id}/retry")
      expect(Object.keys(spec.json.components.securitySchemes).sort()).toEqual(["apiKey", "bearer"])
      const undocumented = Object.entries(spec.json.paths as Record<string, Record<string, Record<string, unknown>>>)
        .filter(([path]) => path.startsWith("/api/v1/"))
        .flatMap(([path, operations]) =>
          Object.entries(operations)
            .filter(([, operation]) => typeof operation["x-required-permission"] !== "string")
            .map(([method]) => `${method} ${path}`)
        )
      expect(undocumented).toEqual([])
      expect(spec.json.paths["/api/v1/ops/dead-letters/discard"].post["x-required-permission"]).toBe("ops:write")
      const docs = yield* request(base, "GET", "/docs")
      expect(docs.status).toBe(200)
      expect(docs.text).toContain("<html")
    })
  )

  it.scopedLive("/metrics shows the HTTP and job series in Prometheus format", () =>
    Effect.gen(function* () {
      const { base, context } = yield* server({ worker: true })
      yield* request(base, "GET", "/api/v1/ops/queues")
      yield* enqueue(recordTask, { label: "metrics" }).pipe(Effect.provide(context))
      yield* enqueue(recordTask, { label: "later" }, { runAt: new Date(Date.now() + 3_600_000) }).pipe(
        Effect.provide(context)
      )
      const text = yield* waitFor(
        "job metrics",
        Effect.map(request(base, "GET", "/metrics"), (r) =>
          r.text.includes('jobs_completed_total{task="testkit.record"}') ? r.text : undefined
        )
      )
      expect(text).toContain("# TYPE http_requests_total counter")
      expect(text).toMatch(/http_requests_total\{method="GET",route="\/api\/v1\/ops\/queues",status="200"\} \d+/)
      expect(text).toContain("# TYPE http_request_duration_seconds histogram")
      expect(text).toMatch(/jobs_enqueued_total\{task="testkit.record"\} \d+/)
      expect(text).toMatch(/job_duration_seconds_count\{task="testkit.record"\} \d+/)
      expect(text).toContain('jobs_queue_depth{task="testkit.record"} 1')
      expect(text).toContain("# TYPE jobs_oldest_pending_age_seconds gauge")
    })
  )
})
