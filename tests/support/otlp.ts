import { Effect } from "effect"
import http from "node:http"
import type { AddressInfo } from "node:net"

export interface ReceivedSpan {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
}

/** An OTLP/HTTP (JSON) trace receiver on 127.0.0.1, collecting every span it is sent. */
export const otlpReceiver = Effect.acquireRelease(
  Effect.async<{ url: string; spans: Array<ReceivedSpan>; bodies: Array<string>; server: http.Server }>((resume) => {
    const spans: Array<ReceivedSpan> = []
    const bodies: Array<string> = []
    const server = http.createServer((req, res) => {
      let body = ""
      req.on("data", (chunk: Buffer) => (body += chunk.toString()))
      req.on("end", () => {
        bodies.push(body)
        const payload = JSON.parse(body) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<ReceivedSpan> }> }>
        }
        for (const resource of payload.resourceSpans) {
          for (const scope of resource.scopeSpans) spans.push(...scope.spans)
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, bodies, server }))
    )
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((done) => server.close(() => done())))
)

