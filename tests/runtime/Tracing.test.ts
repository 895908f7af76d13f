import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { enqueue } from "../../core/Jobs.ts"
import { ops } from "../../plugins/ops/index.ts"
import { baseUrl, request, testAppLayer } from "../support/app.ts"
import { testDatabase } from "../support/database.ts"
import { recordTask, testkit } from "../support/testkit.ts"
import { otlpReceiver } from "../support/otlp.ts"
import { waitFor } from "../support/wait.ts"

describe("tracing", () => {
  it.scopedLive("exports spans for HTTP requests, SQL statements and jobs, the job span parented by the enqueuing span", () =>
    Effect.gen(function* () {
      const receiver = yield* otlpReceiver
      const db = yield* testDatabase()
      const app = testAppLayer({
        databaseUrl: db.url,
        plugins: [ops.make({ retentionDays: 30, pruneSchedule: "17 3 * * *" }), testkit],
        http: true,
        worker: true,
        config: { otlpEndpoint: Option.some(receiver.url) }
      })
      // Closing the app flushes the batch span processor.
      const enqueueSpan = yield* Effect.scoped(
        Effect.gen(function* () {
          const base = yield* baseUrl
          const listed = yield* request(base, "GET", "/api/v1/ops/queues")
          expect(listed.status).toBe(200)
          const span = yield* enqueue(recordTask, { label: "traced" }).pipe(
            Effect.zipRight(Effect.currentSpan),
            Effect.withSpan("test.enqueue")
          )
          const sql = yield* SqlClient.SqlClient
          yield* waitFor(
            "the job to run",
            Effect.map(sql`select 1 from testkit.runs where label = 'traced'`, (rows) => (rows.length ? true : undefined))
          )
          return span
        }).pipe(Effect.provide(app))
      )
      const spans = receiver.spans
      expect(spans.map((s) => s.name)).toContain("job testkit.record")
      const httpSpan = spans.find((s) => s.name === "http GET /api/v1/ops/queues")
      expect(httpSpan).toBeDefined()
      const sqlUnderHttp = spans.filter((s) => s.traceId === httpSpan!.traceId && s.name === "sql.execute")
      expect(sqlUnderHttp.length).toBeGreaterThan(0)
      const jobSpan = spans.find((s) => s.name === "job testkit.record")!
      expect(jobSpan.traceId).toBe(enqueueSpan.traceId)
      const enqueueSpans = spans.filter((s) => s.name === "jobs.enqueue" && s.traceId === enqueueSpan.traceId)
      expect(enqueueSpans.map((s) => s.spanId)).toContain(jobSpan.parentSpanId)
      expect(spans.some((s) => s.traceId === jobSpan.traceId && s.parentSpanId === jobSpan.spanId && s.name === "sql.execute")).toBe(true)
    })
  )
})
