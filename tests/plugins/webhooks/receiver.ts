import http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"

export interface Received {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

/**
 * An HTTP server on 127.0.0.1 (port 0) for the test's scope: records each request, then
 * lets `respond` answer it once the body is read. Closing drops open connections too, so a
 * receiver still stalling cannot keep the test file alive.
 */
export const receiver = (respond: (request: Received, response: http.ServerResponse) => void = (_, response) => response.end()) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; port: number; url: string; requests: Array<Received> }>((resume) => {
      const requests: Array<Received> = []
      const server = http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          const received = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") }
          requests.push(received)
          respond(received, res)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ server, port, url: `http://127.0.0.1:${port}`, requests }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )

/** A port nothing listens on: bound once, then released. */
export const closedPort = Effect.scoped(Effect.map(receiver(), ({ port }) => port))
