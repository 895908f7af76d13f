import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option, Redacted, Schema } from "effect"
import { decodePluginOptions, loadConfig } from "../../runtime/Config.ts"
import configFile from "../../effect.config.ts"

const load = (env: Record<string, string>) =>
  Effect.withConfigProvider(loadConfig(configFile), ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("config", () => {
  it.effect("environment variables override effect.config.ts", () =>
    Effect.gen(function* () {
      const config = yield* load({
        PORT: "4100",
        DATABASE_URL: "postgres://u:secret@db:5432/app",
        WORKER_CONCURRENCY: "4",
        LOG_FORMAT: "json"
      })
      expect(config.port).toBe(4100)
      expect(config.workerConcurrency).toBe(4)
      expect(config.localQueueSize).toBe(500)
      expect(config.logFormat).toBe("json")
      expect(Option.map(config.databaseUrl, Redacted.value)).toEqual(Option.some("postgres://u:secret@db:5432/app"))
      expect(String(config.databaseUrl)).not.toContain("secret")
    })
  )

  it.effect("a bad value fails naming the variable", () =>
    Effect.gen(function* () {
      const port = yield* Effect.flip(load({ PORT: "eighty" }))
      expect(String(port)).toContain("PORT")
      const url = yield* Effect.flip(load({ REDIS_URL: "http://not-redis" }))
      expect(String(url)).toContain("REDIS_URL")
      const concurrency = yield* Effect.flip(load({ WORKER_CONCURRENCY: "0" }))
      expect(String(concurrency)).toContain("WORKER_CONCURRENCY")
    })
  )

  it.effect("plugin options are decoded with the plugin's Schema, naming plugin and field", () =>
    Effect.gen(function* () {
      const schema = Schema.Struct({ retentionDays: Schema.Int })
      const error = yield* Effect.flip(decodePluginOptions("ops", schema, { retentionDays: "x" }))
      expect(error.message).toContain("options of plugin ops")
      expect(error.message).toContain("retentionDays")
    })
  )
})
