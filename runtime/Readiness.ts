import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer } from "effect"
import { Cache } from "../core/Cache.ts"
import { PgPool } from "../core/Database.ts"
import { pendingMigrations, type MigrationTimeline } from "../core/Migrations.ts"

export interface ReadinessReport {
  readonly ready: boolean
  readonly checks: Record<string, { readonly ok: boolean; readonly detail?: string }>
}

/** What `/readyz` reports: the database answers, the cache answers, migrations are applied. */
export class Readiness extends Context.Tag("trellis/Readiness")<
  Readiness,
  { readonly check: Effect.Effect<ReadinessReport> }
>() {}

const outcome = <E>(effect: Effect.Effect<unknown, E>) =>
  effect.pipe(
    Effect.timeout("2 seconds"),
    Effect.as({ ok: true }),
    Effect.catchAll((error) => Effect.succeed({ ok: false, detail: error instanceof Error ? error.message : String(error) }))
  )

export const layerReadiness = (timelines: ReadonlyArray<MigrationTimeline>) =>
  Layer.effect(
    Readiness,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const cache = yield* Cache
      const pool = yield* PgPool
      // Applied migrations stay applied: once the check passes it is not repeated.
      let migrated = false
      const migrations = Effect.suspend(() =>
        migrated
          ? Effect.void
          : pendingMigrations(pool, timelines).pipe(
              Effect.flatMap((pending) =>
                pending.length === 0
                  ? Effect.sync(() => {
                      migrated = true
                    })
                  : Effect.fail(new Error(`pending: ${pending.join(", ")}`))
              )
            )
      )
      const check = Effect.gen(function* () {
        const [database, cacheCheck, migrationCheck] = yield* Effect.all(
          [outcome(sql`select 1`), outcome(cache.ping), outcome(migrations)],
          { concurrency: "unbounded" }
        )
        const checks = { database, [`cache_${cache.backend}`]: cacheCheck, migrations: migrationCheck }
        return { ready: Object.values(checks).every((c) => c.ok), checks }
      })
      return { check }
    })
  )
