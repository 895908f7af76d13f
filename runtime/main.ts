import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import configFile from "../effect.config.ts"
import { layerLogger, layerMode, type Mode } from "./App.ts"
import { loadConfig, type AppConfig } from "./Config.ts"
import { startEmbeddedPostgres } from "./EmbeddedPostgres.ts"
import { enablePlugins } from "./plugins.ts"

const MODES: ReadonlyArray<Mode> = ["all", "serve", "worker", "migrate"]

/** DATABASE_URL, or an embedded PostgreSQL under the data dir that lives as long as the process. */
const databaseUrl = (config: AppConfig) =>
  Option.match(config.databaseUrl, {
    onSome: Effect.succeed,
    onNone: () =>
      startEmbeddedPostgres({ dataDir: join(config.dataDir, "pg") }).pipe(
        Effect.map(({ url }) => Redacted.make(url))
      )
  })

/** A key generated once, kept under the data dir (mode 600) and printed the one time it is made. */
const generatedOperatorKey = (config: AppConfig) =>
  Effect.promise(async () => {
    const file = join(config.dataDir, "admin-api-key")
    try {
      return { key: (await readFile(file, "utf8")).trim(), created: false }
    } catch {
      const key = `trl_admin_${randomBytes(24).toString("base64url")}`
      await mkdir(config.dataDir, { recursive: true })
      // `wx`: when two processes start at once, the second keeps the first one's key.
      await writeFile(file, `${key}\n`, { mode: 0o600, flag: "wx" }).catch(() => undefined)
      await chmod(file, 0o600)
      return { key: (await readFile(file, "utf8")).trim(), created: true }
    }
  }).pipe(
    Effect.tap(({ created, key }) =>
      created
        ? Effect.sync(() =>
            process.stdout.write(
              `\nGenerated the operator API key (shown once; stored in ${join(config.dataDir, "admin-api-key")}):\n  ${key}\nSend it as the X-API-Key header.\n\n`
            )
          )
        : Effect.void
    ),
    Effect.map(({ key }) => Redacted.make(key))
  )

/**
 * TRELLIS_ADMIN_API_KEY; without it, a generated one, unless the identity plugin is enabled
 * (its bootstrap owner administers the platform then).
 */
const operatorKey = (config: AppConfig, identityEnabled: boolean) =>
  Option.isSome(config.adminApiKey) || identityEnabled
    ? Effect.succeed(config.adminApiKey)
    : Effect.map(generatedOperatorKey(config), Option.some)

const main = Effect.gen(function* () {
  const mode = (process.argv[2] ?? "all") as Mode
  if (!MODES.includes(mode)) {
    return yield* Effect.fail(new Error(`unknown mode ${mode}; use one of ${MODES.join(", ")}`))
  }
  const config = yield* loadConfig(configFile)
  const run = Effect.gen(function* () {
    const plugins = yield* enablePlugins(config.plugins)
    const url = yield* databaseUrl(config)
    const key = yield* operatorKey(config, plugins.some((p) => p.name === "identity"))
    yield* Effect.logInfo(`trellis starting in ${mode} mode`).pipe(
      Effect.annotateLogs({ plugins: plugins.map((p) => p.name).join(","), port: config.port })
    )
    const app = layerMode(mode, { config, plugins, databaseUrl: url, adminApiKey: key })
    if (mode === "migrate") {
      yield* Layer.build(app)
      yield* Effect.logInfo("migrations applied")
      return
    }
    return yield* Layer.launch(app)
  })
  return yield* Effect.scoped(run).pipe(Effect.provide(layerLogger(config)))
})

NodeRuntime.runMain(main)
