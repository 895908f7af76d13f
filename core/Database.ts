import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import pg from "pg"

/**
 * The one `pg.Pool` of a process. @effect/sql-pg and graphile-worker both run on it, so a
 * job enqueued through `SqlClient` inside `sql.withTransaction` uses the same connection as
 * the domain write, and the process has one connection budget.
 */
export class PgPool extends Context.Tag("trellis/PgPool")<PgPool, pg.Pool>() {}

export interface PoolOptions {
  readonly url: Redacted.Redacted<string>
  readonly max?: number
  readonly applicationName?: string
}

export const makePool = (options: PoolOptions) => {
  const pool = new pg.Pool({
    connectionString: Redacted.value(options.url),
    max: options.max ?? 20,
    application_name: options.applicationName ?? "trellis"
  })
  // A client losing its connection (a server restart) must not crash the process: the pool
  // drops it and the next query opens a new one.
  pool.on("error", () => {})
  pool.on("connect", (client) => client.on("error", () => {}))
  return pool
}

export const layerPool = (options: PoolOptions) =>
  Layer.scoped(
    PgPool,
    Effect.acquireRelease(Effect.sync(() => makePool(options)), (pool) => Effect.promise(() => pool.end()))
  )

/** `SqlClient` / `PgClient` over the shared pool; the pool's lifetime belongs to `layerPool`. */
export const layerSql = Layer.unwrapEffect(
  Effect.map(PgPool, (pool) => PgClient.layerFromPool({ acquire: Effect.succeed(pool) }))
)

/** Quotes an SQL identifier (schema and table names come from plugin names, never from users). */
export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`
