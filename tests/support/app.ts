import { HttpServer } from "@effect/platform"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Plugin } from "../../core/Plugin.ts"
import { layerTracing } from "../../core/Tracing.ts"
import { buildRegistry } from "../../core/Registry.ts"
import { layerApp, layerLogger, type AppSetup } from "../../runtime/App.ts"
import type { AppConfig } from "../../runtime/Config.ts"
import { layerHttp } from "../../runtime/Http.ts"
import { layerWorker } from "../../runtime/Worker.ts"

/** Redis for tests and benchmarks: REDIS_URL, else the local server. */
export const redisUrl = () => process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

export const ADMIN_KEY = "test-operator-key-0123456789"

export const testConfig = (overrides: Partial<AppConfig> = {}): AppConfig => ({
  dataDir: join(tmpdir(), `trellis-test-${process.pid}`),
  databaseUrl: Option.none(),
  databasePoolMax: 10,
  redisUrl: Option.none(),
  smtpUrl: Option.none(),
  mailFrom: "Trellis <trellis@localhost>",
  otlpEndpoint: Option.none(),
  serviceName: "trellis-test",
  traceSampleRatio: 1,
  port: 0,
  host: "127.0.0.1",
  maxBodySize: 1_048_576,
  workerConcurrency: 10,
  localQueueSize: 500,
  pollInterval: 200,
  shutdownTimeout: Duration.seconds(10),
  adminApiKey: Option.some(Redacted.make(ADMIN_KEY)),
  logFormat: "json",
  logLevel: "Error",
  plugins: {},
  rateLimits: {
    authenticated: { limit: 100_000, windowSeconds: 60 },
    anonymous: { limit: 100_000, windowSeconds: 60 },
    plugins: {}
  },
  corsOrigins: [],
  trustedProxies: [],
  ...overrides
})

export const withRedis = (): Partial<AppConfig> => ({ redisUrl: Option.some(Redacted.make(redisUrl())) })

export interface TestAppOptions {
  readonly databaseUrl: string
  readonly plugins: ReadonlyArray<Plugin<unknown>>
  readonly http?: boolean
  readonly worker?: boolean
  readonly cron?: boolean
  readonly config?: Partial<AppConfig>
}

const setupOf = (options: TestAppOptions): AppSetup => ({
  config: testConfig(options.config),
  plugins: options.plugins,
  databaseUrl: Redacted.make(options.databaseUrl),
  adminApiKey: Option.some(Redacted.make(ADMIN_KEY))
})

/** The app (migrated), optionally with the HTTP server on a free port and a worker. */
export const testAppLayer = (options: TestAppOptions) => {
  const setup = setupOf(options)
  const registry = buildRegistry(setup.plugins)
  const app = layerApp(setup)
  const worker = options.worker
    ? layerWorker({
        registry,
        concurrency: setup.config.workerConcurrency,
        localQueueSize: setup.config.localQueueSize,
        pollInterval: setup.config.pollInterval,
        shutdownTimeout: setup.config.shutdownTimeout,
        cron: options.cron ?? false
      })
    : Layer.empty
  const http = options.http
    ? layerHttp({
        port: 0,
        host: "127.0.0.1",
        maxBodySize: setup.config.maxBodySize,
        corsOrigins: setup.config.corsOrigins,
        trustedProxies: setup.config.trustedProxies,
        plugins: registry.plugins
      })
    : Layer.empty
  return Layer.mergeAll(http, worker).pipe(
    Layer.provideMerge(app),
    Layer.provide(
      layerTracing({
        endpoint: Option.getOrUndefined(setup.config.otlpEndpoint),
        serviceName: setup.config.serviceName,
        sampleRatio: setup.config.traceSampleRatio
      })
    ),
    Layer.provide(layerLogger(setup.config))
  )
}

/** The base URL of the test HTTP server. */
export const baseUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP server")
  return `http://127.0.0.1:${address.port}`
})

/** fetch with the operator key, JSON in and out. */
export const request = (base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        "x-api-key": ADMIN_KEY,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers
      },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
    })
    const text = await response.text()
    let json: unknown = undefined
    try {
      json = text === "" ? undefined : JSON.parse(text)
    } catch {
      json = undefined
    }
    // `any`: tests read whatever JSON shape the route under test answers with.
    return { status: response.status, headers: response.headers, text, json: json as any }
  })
