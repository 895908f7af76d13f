import { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, Option, Schema } from "effect"
import type { Plugin } from "../../../core/Plugin.ts"
import { CurrentTenant } from "../../../core/Tenancy.ts"
import { flags } from "../../../plugins/flags/index.ts"
import { CreateFlag, FlagsOptions } from "../../../plugins/flags/Model.ts"
import type { AppConfig } from "../../../runtime/Config.ts"
import { baseUrl, testAppLayer } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"

export const flagsPlugin = flags.make(Schema.decodeUnknownSync(FlagsOptions)({}))
export const staleTask = flagsPlugin.tasks.find((t) => t.id === "flags.stale")!

/** With the identity plugin: a configured first-owner password, so none is generated and printed. */
const quietBootstrap = Layer.setConfigProvider(
  ConfigProvider.fromMap(new Map([["TRELLIS_BOOTSTRAP_PASSWORD", "flags-tests-bootstrap-password"]])).pipe(
    ConfigProvider.orElse(() => ConfigProvider.fromEnv())
  )
)

export interface StartOptions {
  readonly db?: { readonly url: string }
  readonly plugins?: ReadonlyArray<Plugin<unknown>>
  readonly http?: boolean
  readonly config?: Partial<AppConfig>
}

/** An app with the flags plugin (and `plugins`) on its own database, or on `db` to share one. */
export const startApp = (options: StartOptions = {}) =>
  Effect.gen(function* () {
    const db = options.db ?? (yield* testDatabase())
    const context = yield* Layer.build(
      testAppLayer({
        databaseUrl: db.url,
        plugins: [flagsPlugin, ...(options.plugins ?? [])],
        http: options.http ?? false,
        ...(options.config ? { config: options.config } : {})
      }).pipe(Layer.provide(quietBootstrap))
    )
    return {
      db,
      context,
      sql: yield* Effect.provide(SqlClient.SqlClient, context),
      base: options.http ? yield* Effect.provide(baseUrl, context) : ""
    }
  })

/** Runs `effect` as work of organisation `orgId` (what a request of that org's caller does). */
export const asOrg = <A, E, R>(orgId: string, effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, CurrentTenant, Option.some(orgId))

export const newFlag = (input: Record<string, unknown>) => Schema.decodeUnknownSync(CreateFlag)(input)

/** A flag on in production for everyone. */
export const onInProduction = (key: string, extra: Record<string, unknown> = {}) =>
  newFlag({ key, type: "release", environments: { production: { enabled: true, strategies: [{ name: "default" }] } }, ...extra })

/** 50% of users by userId, for country NL or BE on app versions above 2.0.0. */
export const rolloutFlag = (key: string) =>
  newFlag({
    key,
    type: "release",
    environments: {
      production: {
        enabled: true,
        strategies: [
          {
            name: "flexibleRollout",
            parameters: { rollout: 50, stickiness: "userId" },
            constraints: [
              { contextName: "country", operator: "IN", values: ["NL", "BE"] },
              { contextName: "appVersion", operator: "SEMVER_GT", value: "2.0.0" }
            ]
          }
        ]
      }
    }
  })

/** A json flag: two variants with object payloads, on in production. */
export const jsonFlag = (key: string) =>
  newFlag({
    key,
    type: "experiment",
    environments: { production: { enabled: true, strategies: [{ name: "default" }] } },
    variants: [
      { name: "blue", weight: 500, stickiness: "userId", payload: { type: "json", value: '{"color":"blue"}' } },
      { name: "green", weight: 500, stickiness: "userId", payload: { type: "json", value: '{"color":"green"}' } }
    ]
  })
