import { Config, Duration, Effect, Option, Redacted, Schema } from "effect"
import { isIP } from "node:net"
import { resolve } from "node:path"
import type { RateLimit } from "../core/RateLimit.ts"

/** What `effect.config.ts` declares: the enabled plugins with their options, and defaults. */
export interface TrellisConfigFile {
  /** Enabled plugins by name, each with its options (`true` for the defaults). */
  readonly plugins: Readonly<Record<string, unknown>>
  readonly http?: { readonly port?: number; readonly host?: string; readonly maxBodySize?: number }
  readonly worker?: { readonly concurrency?: number; readonly localQueueSize?: number; readonly pollInterval?: number }
  readonly mail?: { readonly from?: string }
  /** Requests per window: per authenticated caller, per client address on anonymous routes, per plugin. */
  readonly rateLimits?: {
    readonly authenticated?: RateLimit
    readonly anonymous?: RateLimit
    readonly plugins?: Readonly<Record<string, RateLimit>>
  }
  readonly cors?: { readonly origins?: ReadonlyArray<string> }
}

export const defineConfig = <const C extends TrellisConfigFile>(config: C): C => config

export type LogFormat = "json" | "pretty"

/** The process's settings: effect.config.ts, overridden by the environment. Read once at start. */
export interface AppConfig {
  readonly dataDir: string
  readonly databaseUrl: Option.Option<Redacted.Redacted<string>>
  readonly databasePoolMax: number
  readonly redisUrl: Option.Option<Redacted.Redacted<string>>
  readonly smtpUrl: Option.Option<Redacted.Redacted<string>>
  readonly mailFrom: string
  readonly otlpEndpoint: Option.Option<string>
  readonly serviceName: string
  readonly traceSampleRatio: number
  readonly port: number
  readonly host: string
  readonly maxBodySize: number
  readonly workerConcurrency: number
  readonly localQueueSize: number
  readonly pollInterval: number
  readonly shutdownTimeout: Duration.Duration
  readonly adminApiKey: Option.Option<Redacted.Redacted<string>>
  readonly logFormat: LogFormat
  readonly logLevel: string
  readonly plugins: Readonly<Record<string, unknown>>
  readonly rateLimits: {
    readonly authenticated: RateLimit
    readonly anonymous: RateLimit
    readonly plugins: Readonly<Record<string, RateLimit>>
  }
  readonly corsOrigins: ReadonlyArray<string>
  /** Proxies (IPs or CIDRs) whose X-Forwarded-For is believed. */
  readonly trustedProxies: ReadonlyArray<string>
}

const url = (name: string, protocols: ReadonlyArray<string>) =>
  Config.redacted(name).pipe(
    Config.validate({
      message: `${name} must be a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}`,
      validation: (value) => {
        try {
          return protocols.includes(new URL(Redacted.value(value)).protocol)
        } catch {
          return false
        }
      }
    }),
    Config.option
  )

const positiveInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    Config.withDefault(fallback)
  )

/** Reads the environment over `file`; a bad value fails naming the variable. */
export const loadConfig = (file: TrellisConfigFile) =>
  Config.all({
    dataDir: Config.string("TRELLIS_DATA_DIR").pipe(Config.withDefault(".data"), Config.map((d) => resolve(d))),
    databaseUrl: url("DATABASE_URL", ["postgres:", "postgresql:"]),
    databasePoolMax: positiveInt("DATABASE_POOL_MAX", 20),
    redisUrl: url("REDIS_URL", ["redis:", "rediss:"]),
    smtpUrl: url("SMTP_URL", ["smtp:", "smtps:"]),
    mailFrom: Config.string("MAIL_FROM").pipe(Config.withDefault(file.mail?.from ?? "Trellis <trellis@localhost>")),
    otlpEndpoint: Config.string("OTEL_EXPORTER_OTLP_ENDPOINT").pipe(
      Config.validate({
        message: "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL",
        validation: (value) => /^https?:\/\//.test(value)
      }),
      Config.option
    ),
    serviceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("trellis")),
    traceSampleRatio: Config.number("TRELLIS_TRACE_SAMPLE_RATIO").pipe(
      Config.validate({ message: "TRELLIS_TRACE_SAMPLE_RATIO must be between 0 and 1", validation: (n) => n >= 0 && n <= 1 }),
      Config.withDefault(1)
    ),
    port: Config.port("PORT").pipe(Config.withDefault(file.http?.port ?? 3000)),
    host: Config.string("HOST").pipe(Config.withDefault(file.http?.host ?? "127.0.0.1")),
    maxBodySize: positiveInt("TRELLIS_MAX_BODY_SIZE", file.http?.maxBodySize ?? 1_048_576),
    workerConcurrency: positiveInt("WORKER_CONCURRENCY", file.worker?.concurrency ?? 10),
    localQueueSize: positiveInt("WORKER_LOCAL_QUEUE_SIZE", file.worker?.localQueueSize ?? 500),
    pollInterval: positiveInt("WORKER_POLL_INTERVAL_MS", file.worker?.pollInterval ?? 2_000),
    shutdownTimeout: Config.duration("TRELLIS_SHUTDOWN_TIMEOUT").pipe(Config.withDefault(Duration.seconds(30))),
    adminApiKey: Config.redacted("TRELLIS_ADMIN_API_KEY").pipe(
      Config.validate({
        message: "TRELLIS_ADMIN_API_KEY must be at least 16 characters",
        validation: (v) => Redacted.value(v).length >= 16
      }),
      Config.option
    ),
    logFormat: Config.literal("json", "pretty")("LOG_FORMAT").pipe(
      Config.orElse(() =>
        Config.string("NODE_ENV").pipe(
          Config.withDefault("development"),
          Config.map((env): LogFormat => (env === "production" ? "json" : "pretty"))
        )
      )
    ),
    logLevel: Config.literal("Trace", "Debug", "Info", "Warning", "Error", "None")("LOG_LEVEL").pipe(
      Config.withDefault("Info" as const)
    ),
    plugins: Config.succeed(file.plugins),
    rateLimits: Config.all({
      authenticated: Config.all({
        limit: positiveInt("TRELLIS_RATE_LIMIT", file.rateLimits?.authenticated?.limit ?? 1200),
        windowSeconds: positiveInt("TRELLIS_RATE_LIMIT_WINDOW", file.rateLimits?.authenticated?.windowSeconds ?? 60)
      }),
      anonymous: Config.all({
        limit: positiveInt("TRELLIS_RATE_LIMIT_ANONYMOUS", file.rateLimits?.anonymous?.limit ?? 20),
        windowSeconds: positiveInt("TRELLIS_RATE_LIMIT_WINDOW", file.rateLimits?.anonymous?.windowSeconds ?? 60)
      }),
      plugins: Config.succeed(file.rateLimits?.plugins ?? {})
    }),
    corsOrigins: Config.array(Config.string(), "TRELLIS_CORS_ORIGINS").pipe(
      Config.withDefault(file.cors?.origins ?? [])
    ),
    trustedProxies: Config.array(Config.string(), "TRELLIS_TRUSTED_PROXIES").pipe(
      Config.validate({
        message: "TRELLIS_TRUSTED_PROXIES must list IP addresses or CIDRs",
        validation: (entries) =>
          entries.every((entry) => {
            const [address, prefix] = entry.split("/")
            const family = isIP(address ?? "")
            return family !== 0 && (prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128)))
          })
      }),
      Config.withDefault([])
    )
  }) satisfies Config.Config<AppConfig>

/** Decodes a plugin's options from effect.config.ts; a bad value names the plugin and field. */
export const decodePluginOptions = <A, I>(plugin: string, schema: Schema.Schema<A, I>, raw: unknown) =>
  Schema.decodeUnknown(schema, { errors: "all", onExcessProperty: "error" })(raw === true ? {} : raw).pipe(
    Effect.mapError((error) => new Error(`effect.config.ts: options of plugin ${plugin}: ${error.message}`))
  )
