import { Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { join } from "node:path"
import { layerAuthentication } from "../core/Auth.ts"
import { layerMemory, layerRedis } from "../core/Cache.ts"
import { layerRateLimiterMemory, layerRateLimiterRedis } from "../core/RateLimit.ts"
import { layerPool, layerSql, PgPool } from "../core/Database.ts"
import { EventRegistry } from "../core/Events.ts"
import { layerOutbox, layerSmtp } from "../core/Mail.ts"
import { migrate, type MigrationTimeline } from "../core/Migrations.ts"
import { loadPluginMigrations, sqlDir, type Plugin } from "../core/Plugin.ts"
import { buildRegistry, PluginRegistry, type Registry } from "../core/Registry.ts"
import { layerTracing } from "../core/Tracing.ts"
import type { AppConfig } from "./Config.ts"
import { layerHttp } from "./Http.ts"
import { layerReadiness } from "./Readiness.ts"
import { layerWorker } from "./Worker.ts"

export interface AppSetup {
  readonly config: AppConfig
  readonly plugins: ReadonlyArray<Plugin<unknown>>
  readonly databaseUrl: Redacted.Redacted<string>
  /** The operator key (every permission, no organisation), when one is configured. */
  readonly adminApiKey: Option.Option<Redacted.Redacted<string>>
}

/** Core first, then the plugins in dependency order; each in its own schema. */
export const migrationTimelines = (registry: Registry): ReadonlyArray<MigrationTimeline> => [
  { owner: "core", schema: "core", load: loadPluginMigrations({ dir: sqlDir("core") }) },
  ...registry.plugins.map((plugin) => ({
    owner: plugin.name,
    schema: plugin.name,
    load: loadPluginMigrations(plugin.migrations)
  }))
]

/** The database, migrated: every process migrates at start, under the advisory lock. */
const layerDatabase = (setup: AppSetup, timelines: ReadonlyArray<MigrationTimeline>) =>
  Layer.effectDiscard(Effect.flatMap(PgPool, (pool) => migrate(pool, timelines))).pipe(
    Layer.provideMerge(layerSql),
    Layer.provideMerge(layerPool({ url: setup.databaseUrl, max: setup.config.databasePoolMax }))
  )

/**
 * The composed application: database (migrated), cache, mail, auth, registries, every
 * plugin's layer and readiness. HTTP and worker layers run on top of it.
 */
export const layerApp = (setup: AppSetup) => {
  const { config } = setup
  const registry = buildRegistry(setup.plugins)
  const timelines = migrationTimelines(registry)
  const cache = Option.match(config.redisUrl, {
    onNone: () => layerMemory(),
    onSome: (url) => layerRedis({ url: Redacted.value(url), keyPrefix: "trellis:" })
  })
  const mail = Option.match(config.smtpUrl, {
    onNone: () => layerOutbox({ dir: join(config.dataDir, "outbox"), from: config.mailFrom }),
    onSome: (url) => layerSmtp({ url, from: config.mailFrom })
  })
  const rateLimiter = Option.match(config.redisUrl, {
    onNone: () => layerRateLimiterMemory,
    onSome: (url) => layerRateLimiterRedis({ url: Redacted.value(url) })
  })
  const core = Layer.mergeAll(
    cache,
    mail,
    rateLimiter,
    Layer.succeed(PluginRegistry, registry),
    Layer.succeed(EventRegistry, { types: registry.eventTypes, subscriptions: registry.subscriptions })
  ).pipe(Layer.provideMerge(layerDatabase(setup, timelines)))
  const pluginLayers = registry.plugins.flatMap((plugin) => (plugin.layer ? [plugin.layer] : []))
  const plugins = Layer.mergeAll(layerReadiness(timelines), ...pluginLayers).pipe(Layer.provideMerge(core))
  // Authentication sees the plugins' services: the identity plugin's CredentialVerifier.
  const authentication = layerAuthentication({
    operatorKey: setup.adminApiKey,
    rateLimits: config.rateLimits,
    routePrefixes: registry.routePrefixes
  })
  return authentication.pipe(Layer.provideMerge(plugins))
}

export type Mode = "all" | "serve" | "worker" | "migrate"

/** What a process runs: HTTP, the worker, both, or only the migrations. */
export const layerMode = (mode: Mode, setup: AppSetup) => {
  const { config } = setup
  const registry = buildRegistry(setup.plugins)
  const http = layerHttp({
    port: config.port,
    host: config.host,
    maxBodySize: config.maxBodySize,
    corsOrigins: config.corsOrigins,
    trustedProxies: config.trustedProxies,
    plugins: registry.plugins
  })
  const worker = layerWorker({
    registry,
    concurrency: config.workerConcurrency,
    localQueueSize: config.localQueueSize,
    pollInterval: config.pollInterval,
    shutdownTimeout: config.shutdownTimeout
  })
  const services =
    mode === "migrate"
      ? layerDatabase(setup, migrationTimelines(registry))
      : (mode === "serve" ? Layer.discard(http) : mode === "worker" ? worker : Layer.merge(Layer.discard(http), worker)).pipe(
          Layer.provide(layerApp(setup))
        )
  return Layer.discard(services).pipe(
    Layer.provide(
      layerTracing({
        endpoint: Option.getOrUndefined(config.otlpEndpoint),
        serviceName: config.serviceName,
        sampleRatio: config.traceSampleRatio
      })
    )
  )
}

/** JSON lines in production, readable lines in development, at the configured level. */
export const layerLogger = (config: Pick<AppConfig, "logFormat" | "logLevel">) =>
  Layer.merge(
    config.logFormat === "json" ? Logger.json : Logger.pretty,
    Logger.minimumLogLevel(LogLevel.fromLiteral(config.logLevel as LogLevel.Literal))
  )

