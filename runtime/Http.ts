import { Etag, HttpApi, HttpServerError, HttpApiScalar, HttpIncomingMessage, HttpLayerRouter, HttpServer, HttpServerRequest, HttpServerResponse, OpenApi } from "@effect/platform"
import { NodeHttpPlatform, NodeHttpServer } from "@effect/platform-node"
import { Cause, Context, Effect, FiberRef, Layer, LogLevel, Option } from "effect"
import * as FindMyWay from "find-my-way-ts"
import { randomUUID } from "node:crypto"
import { createServer, type IncomingMessage } from "node:http"
import { BlockList, isIP } from "node:net"
import { queueStats } from "../core/JobStats.ts"
import { httpRequestDuration, httpRequestsTotal, labelled, renderPrometheus } from "../core/Metrics.ts"
import type { Plugin } from "../core/Plugin.ts"
import { CurrentRequestId } from "../core/Audit.ts"
import { ClientAddress, ResponseHeaders } from "../core/RateLimit.ts"
import { traced } from "../core/Tracing.ts"
import { withIdempotency } from "./Idempotency.ts"
import { Readiness } from "./Readiness.ts"

/** One OpenAPI 3.1 document for every enabled plugin. */
export const combinedApi = (plugins: ReadonlyArray<Plugin<unknown>>) =>
  plugins.reduce(
    (api, plugin) => (plugin.http ? api.addHttpApi(plugin.http.api) : api),
    HttpApi.make("trellis") as HttpApi.HttpApi.AnyWithProps
  ).annotateContext(
    OpenApi.annotations({
      title: "Trellis API",
      version: "1.0.0",
      description: "Every enabled plugin's routes. Authenticate with X-API-Key or Authorization: Bearer."
    })
  )

const SYSTEM_ROUTES: ReadonlyArray<readonly [string, `/${string}`]> = [
  ["GET", "/healthz"],
  ["GET", "/readyz"],
  ["GET", "/metrics"],
  ["GET", "/openapi.json"],
  ["GET", "/docs"]
]

/**
 * The route patterns of the app, for two things the router does not tell: which pattern a
 * request matched (the `route` label of the HTTP metrics, bounded in cardinality) and
 * which methods a path allows (405 instead of 404 for a wrong method).
 */
const makeRouteTable = (spec: OpenApi.OpenAPISpec) => {
  const router = FindMyWay.make<string>({ ignoreTrailingSlash: false })
  const patterns: Array<readonly [string, string]> = [...SYSTEM_ROUTES]
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of ["get", "post", "put", "patch", "delete"] as const) {
      if (item[method]) patterns.push([method.toUpperCase(), path.replace(/\{([^}]+)\}/g, ":$1")])
    }
  }
  for (const [method, path] of patterns) router.on(method, path as `/${string}`, path)
  const methods = [...new Set(patterns.map(([m]) => m))]
  return {
    route: (method: string, url: string) => router.find(method, url)?.handler,
    allowed: (url: string) => methods.filter((m) => router.find(m, url) !== undefined)
  }
}

const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer"
} as const

const tooLarge = (maxBodySize: number) =>
  json(413, { _tag: "PayloadTooLarge", message: `request body exceeds the limit of ${maxBodySize} bytes` })

/**
 * A body of undeclared length (chunked) is found too large while it is read, and the platform
 * then destroys the request, which destroys the socket before the 413 is written. For such
 * requests, destroying the request stops reading it instead; the answer then goes out with
 * `connection: close`, and Node closes the socket after it.
 */
const keepSocketForAnswer = (request: HttpServerRequest.HttpServerRequest) => {
  const source = request.source as IncomingMessage
  source.destroy = function (this: IncomingMessage) {
    this.pause()
    return this
  }
}

/** A body that cannot be read: too large (found while reading a chunked body) or not valid JSON. */
const unreadableBody = (error: unknown, maxBodySize: number) => {
  if (!HttpServerError.isServerError(error) || error._tag !== "RequestError" || error.reason !== "Decode") {
    return undefined
  }
  const cause = error.cause instanceof Error ? error.cause.message : String(error.cause)
  return cause === "maxBytes exceeded"
    ? HttpServerResponse.setHeader(tooLarge(maxBodySize), "connection", "close")
    : json(400, { _tag: "BadRequest", message: `the request body could not be read: ${cause}` })
}

const isTlsSocket = (request: HttpServerRequest.HttpServerRequest) =>
  (request.source as { socket?: { encrypted?: boolean } }).socket?.encrypted === true

/**
 * CORS for the configured origins only (`*` allows any): preflights are answered here, and
 * responses to an allowed origin carry the headers a browser needs to read them.
 */
const makeCors = (origins: ReadonlyArray<string>) => {
  const allowed = (origin: string | undefined): origin is string =>
    origin !== undefined && (origins.includes("*") || origins.includes(origin))
  return {
    preflight: (request: HttpServerRequest.HttpServerRequest) => {
      const origin = request.headers["origin"]
      if (request.method !== "OPTIONS" || request.headers["access-control-request-method"] === undefined) return undefined
      if (!allowed(origin)) return json(403, { _tag: "Forbidden", message: `origin ${origin ?? "(none)"} is not allowed` })
      return HttpServerResponse.empty({
        status: 204,
        headers: {
          "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
          "access-control-allow-headers":
            request.headers["access-control-request-headers"] ?? "authorization, content-type, x-api-key, idempotency-key",
          "access-control-max-age": "600"
        }
      })
    },
    headers: (request: HttpServerRequest.HttpServerRequest): Record<string, string> => {
      const origin = request.headers["origin"]
      return allowed(origin)
        ? {
            "access-control-allow-origin": origin,
            vary: "Origin",
            "access-control-expose-headers":
              "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, idempotent-replayed, etag"
          }
        : {}
    }
  }
}

/**
 * The client's address: the socket's, or — when the socket is a trusted proxy — the last
 * address in `X-Forwarded-For` that is not itself a trusted proxy (earlier entries are the
 * client's to forge).
 */
const makeClientAddress = (trustedProxies: ReadonlyArray<string>) => {
  const trusted = new BlockList()
  for (const entry of trustedProxies) {
    const [address, prefix] = entry.split("/")
    const family = isIP(address!) === 6 ? "ipv6" : "ipv4"
    if (prefix === undefined) trusted.addAddress(address!, family)
    else trusted.addSubnet(address!, Number(prefix), family)
  }
  const isTrusted = (address: string) => {
    const plain = address.startsWith("::ffff:") ? address.slice(7) : address
    const family = isIP(plain)
    return family !== 0 && trusted.check(plain, family === 6 ? "ipv6" : "ipv4")
  }
  return (request: HttpServerRequest.HttpServerRequest) => {
    const socket = Option.getOrElse(request.remoteAddress, () => "unknown")
    if (trustedProxies.length === 0 || !isTrusted(socket)) return socket
    const forwarded = (request.headers["x-forwarded-for"] ?? "").split(",").map((a) => a.trim()).filter((a) => a !== "")
    for (let i = forwarded.length - 1; i >= 0; i--) if (!isTrusted(forwarded[i]!)) return forwarded[i]!
    return socket
  }
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * Everything every request gets: a request id (taken from `x-request-id` when sane) in the
 * response, the logs and the span; one log line; the HTTP metrics; security headers; JSON
 * bodies for 404, 405, 413 and unexpected failures (which never carry the cause).
 */
const withRequestHandling = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
  table: ReturnType<typeof makeRouteTable>,
  options: {
    readonly maxBodySize: number
    readonly corsOrigins: ReadonlyArray<string>
    readonly trustedProxies: ReadonlyArray<string>
    /** The request log line is written (the level admits Info): otherwise it is not even built. */
    readonly logRequests: boolean
  }
) => {
  const { maxBodySize } = options
  const cors = makeCors(options.corsOrigins)
  const clientAddressOf = makeClientAddress(options.trustedProxies)
  const metricsByKey = new Map<string, { count: (n: number) => void; duration: (seconds: number) => void }>()
  const metricsFor = (method: string, route: string, status: number) => {
    const key = `${method} ${route} ${status}`
    let metrics = metricsByKey.get(key)
    if (!metrics) {
      const labels = { method, route, status: String(status) }
      metrics = { count: labelled(httpRequestsTotal, labels), duration: labelled(httpRequestDuration, labels) }
      metricsByKey.set(key, metrics)
    }
    return metrics
  }

  return Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const header = request.headers["x-request-id"]
    const requestId = header !== undefined && requestIdPattern.test(header) ? header : randomUUID()
    const start = performance.now()
    const path = request.url.split("?", 1)[0]!
    const route = table.route(request.method, path)

    /** What handling the request adds to the response's headers (rate limits). */
    const added: Record<string, string> = {}
    const declaredLength = Number(request.headers["content-length"] ?? 0)
    if (request.headers["transfer-encoding"] !== undefined) keepSocketForAnswer(request)
    const preflight = cors.preflight(request)
    const handled = preflight
      ? Effect.succeed(preflight)
      : declaredLength > maxBodySize
        ? Effect.succeed(tooLarge(maxBodySize))
        : app
    const response = yield* handled.pipe(
      HttpIncomingMessage.withMaxBodySize(Option.some(maxBodySize)),
      Effect.catchAllCause((cause) => {
        const failure = Cause.failureOption(cause)
        // HttpApi turns a body it cannot read into a defect, so look at the squashed cause.
        const unreadable = unreadableBody(Cause.squash(cause), maxBodySize)
        if (unreadable) return Effect.succeed(unreadable)
        if (Option.isSome(failure) && (failure.value as { _tag?: string })._tag === "RouteNotFound") {
          const allowed = table.allowed(path)
          return Effect.succeed(
            allowed.length > 0
              ? HttpServerResponse.setHeader(
                  json(405, { _tag: "MethodNotAllowed", message: `${request.method} is not allowed on ${path}; use ${allowed.join(", ")}` }),
                  "allow",
                  allowed.join(", ")
                )
              : json(404, { _tag: "NotFound", message: `no route ${request.method} ${path}` })
          )
        }
        // The client went away mid-request (its socket closed): nothing failed on our side.
        if (Cause.isInterruptedOnly(cause)) return Effect.succeed(HttpServerResponse.empty({ status: 499 }))
        return Effect.as(
          Effect.logError("request failed", cause),
          json(500, { _tag: "InternalError", message: "internal error", requestId })
        )
      }),
      Effect.map((response) =>
        response.status >= 500 && response.body._tag === "Empty"
          ? json(response.status, { _tag: "InternalError", message: "internal error", requestId })
          : response
      ),
      // One context change for all three (each provideService swaps the fiber's context twice).
      Effect.provide(
        Context.make(CurrentRequestId, Option.some(requestId)).pipe(
          Context.add(ClientAddress, Option.some(clientAddressOf(request))),
          Context.add(ResponseHeaders, added)
        )
      ),
      Effect.annotateLogs("requestId", requestId),
      traced(`http ${request.method} ${route ?? "unmatched"}`, {
        kind: "server",
        attributes: { "http.request.method": request.method, "http.route": route ?? "unmatched", "request.id": requestId }
      })
    )
    const seconds = (performance.now() - start) / 1000
    const metrics = metricsFor(request.method, route ?? "unmatched", response.status)
    metrics.count(1)
    metrics.duration(seconds)
    if (options.logRequests) {
      yield* Effect.logInfo("http request").pipe(
        Effect.annotateLogs({
          requestId,
          method: request.method,
          route: route ?? "unmatched",
          status: response.status,
          ms: Math.round(seconds * 10_000) / 10
        })
      )
    }
    const secure = request.headers["x-forwarded-proto"] === "https" || isTlsSocket(request)
    return HttpServerResponse.setHeaders(response, {
      ...SECURITY_HEADERS,
      ...(secure ? { "strict-transport-security": "max-age=63072000; includeSubDomains" } : {}),
      ...cors.headers(request),
      ...added,
      "x-request-id": requestId
    })
  })
}

const systemRoutes = (spec: OpenApi.OpenAPISpec, api: HttpApi.HttpApi.AnyWithProps) =>
  Layer.mergeAll(
    HttpLayerRouter.add("GET", "/healthz", HttpServerResponse.unsafeJson({ status: "ok" })),
    HttpLayerRouter.add(
      "GET",
      "/readyz",
      Effect.flatMap(Readiness, (readiness) => readiness.check).pipe(
        Effect.map((report) => json(report.ready ? 200 : 503, report))
      )
    ),
    HttpLayerRouter.add(
      "GET",
      "/metrics",
      queueStats.pipe(
        Effect.orElseSucceed(() => []),
        Effect.flatMap((stats) =>
          renderPrometheus([
            {
              name: "jobs_queue_depth",
              help: "Jobs waiting to run (due or scheduled) by task",
              samples: stats.map((s) => ({ labels: { task: s.task }, value: s.pending + s.scheduled }))
            },
            {
              name: "jobs_running",
              help: "Jobs locked by a worker by task",
              samples: stats.map((s) => ({ labels: { task: s.task }, value: s.running }))
            },
            {
              name: "jobs_oldest_pending_age_seconds",
              help: "Age of the oldest due job not yet started by task",
              samples: stats.map((s) => ({ labels: { task: s.task }, value: s.oldestPendingAgeSeconds }))
            }
          ])
        ),
        Effect.map((text) => HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      )
    ),
    HttpLayerRouter.add("GET", "/openapi.json", HttpServerResponse.unsafeJson(spec)),
    HttpApiScalar.layerHttpLayerRouter({ api, path: "/docs" })
  )

export interface HttpOptions {
  readonly port: number
  readonly host: string
  readonly maxBodySize: number
  readonly corsOrigins: ReadonlyArray<string>
  readonly trustedProxies?: ReadonlyArray<string>
  readonly plugins: ReadonlyArray<Plugin<unknown>>
}

/**
 * The HTTP server. Routes are built BEFORE the server listens (NodeHttpServer.layer
 * listens as soon as it is built), so no request can arrive before its route exists.
 */
export const layerHttp = (options: HttpOptions) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const api = combinedApi(options.plugins)
      const spec = OpenApi.fromApi(api)
      const table = makeRouteTable(spec)
      const routes = Layer.mergeAll(
        systemRoutes(spec, api),
        ...options.plugins.flatMap((plugin) => (plugin.http ? [plugin.http.routes] : []))
      )
      const handler = yield* HttpLayerRouter.toHttpEffect(
        routes.pipe(Layer.provide([NodeHttpPlatform.layer, Etag.layerWeak]))
      )
      const logRequests = LogLevel.lessThanEqual(yield* FiberRef.get(FiberRef.currentMinimumLogLevel), LogLevel.Info)
      return HttpServer.serve(
        withRequestHandling(withIdempotency(handler), table, {
          ...options,
          trustedProxies: options.trustedProxies ?? [],
          logRequests
        })
      ).pipe(
        // The server alone (`layer` would add Node's file system, path, terminal, command
        // and worker services, which no route uses): every request's context starts from this
        // one plus what the routes were built with, and the router and HttpApi copy it several
        // times per request, so each service in it is paid for on every request.
        Layer.provideMerge(NodeHttpServer.layerServer(createServer, { port: options.port, host: options.host }))
      )
    })
  )

