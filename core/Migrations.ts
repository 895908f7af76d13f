import { createHash } from "node:crypto"
import { readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { Logger, runMigrations as installGraphileWorker } from "graphile-worker"
import type pg from "pg"
import { quoteIdent } from "./Database.ts"

export class MigrationError extends Schema.TaggedError<MigrationError>()("MigrationError", {
  message: Schema.String
}) {}

export interface Migration {
  readonly id: number
  readonly name: string
  readonly sql: string
  readonly checksum: string
}

/** One plugin's (or core's) migration history: its own schema and its own table. */
export interface MigrationTimeline {
  readonly owner: string
  readonly schema: string
  readonly load: Effect.Effect<ReadonlyArray<Migration>, MigrationError>
}

export interface AppliedMigration {
  readonly owner: string
  readonly id: number
  readonly name: string
}

const fileName = /^(\d{4})_([a-z0-9_]+)\.sql$/

/** Reads `NNNN_description.sql` files of a folder in order; a missing folder has none. */
export const loadMigrationDir = (dir: string): Effect.Effect<ReadonlyArray<Migration>, MigrationError> =>
  Effect.tryPromise({
    try: async () => {
      let names: Array<string>
      try {
        names = await readdir(dir)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return []
        throw error
      }
      const migrations: Array<Migration> = []
      for (const name of names.filter((n) => n.endsWith(".sql")).sort()) {
        const match = fileName.exec(name)
        if (!match) throw new Error(`${join(dir, name)}: migration files are named NNNN_description.sql`)
        const sql = await readFile(join(dir, name), "utf8")
        const id = Number(match[1])
        if (migrations.some((m) => m.id === id)) throw new Error(`${dir}: two migrations numbered ${match[1]}`)
        migrations.push({ id, name: match[2]!, sql, checksum: createHash("sha256").update(sql).digest("hex") })
      }
      return migrations
    },
    catch: (error) => new MigrationError({ message: `cannot read migrations: ${String(error)}` })
  })

const silentLogger = new Logger(() => () => {})

/** Any constant works; it only has to be the same in every Trellis process of a database. */
const MIGRATION_LOCK_KEY = 747_335_112

/**
 * Brings the database up to date: graphile-worker's schema, then every timeline in the given
 * order, each migration in its own transaction. A session advisory lock makes concurrent
 * starts wait for the first one, so each migration runs exactly once.
 */
export const migrate = (pool: pg.Pool, timelines: ReadonlyArray<MigrationTimeline>) =>
  Effect.gen(function* () {
    const loaded = yield* Effect.forEach(timelines, (t) => Effect.map(t.load, (migrations) => ({ ...t, migrations })))
    return yield* Effect.acquireUseRelease(
      Effect.tryPromise({
        try: async () => {
          const client = await pool.connect()
          try {
            await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_KEY])
          } catch (error) {
            client.release(error as Error)
            throw error
          }
          return client
        },
        catch: (error) => new MigrationError({ message: `cannot take the migration lock: ${String(error)}` })
      }),
      (client) =>
        Effect.tryPromise({
          try: async () => {
            await installGraphileWorker({ pgPool: pool, logger: silentLogger })
            const applied: Array<AppliedMigration> = []
            for (const timeline of loaded) {
              applied.push(...(await applyTimeline(client, timeline, timeline.migrations)))
            }
            return applied
          },
          catch: (error) =>
            error instanceof MigrationError ? error : new MigrationError({ message: String(error) })
        }),
      (client) =>
        Effect.promise(() =>
          client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).then(
            () => client.release(),
            (error: Error) => client.release(error)
          )
        )
    )
  }).pipe(Effect.withSpan("migrate"))

const applyTimeline = async (
  client: pg.PoolClient,
  timeline: MigrationTimeline,
  migrations: ReadonlyArray<Migration>
): Promise<Array<AppliedMigration>> => {
  const schema = quoteIdent(timeline.schema)
  await client.query(`create schema if not exists ${schema}`)
  // Tenant work runs as trellis_app (created by core's migrations, so absent only before them).
  await client.query(
    `do $$ begin
       if exists (select 1 from pg_roles where rolname = 'trellis_app') then
         execute 'grant usage on schema ${schema.replace(/'/g, "''")} to trellis_app';
       end if;
     end $$`
  )
  await client.query(
    `create table if not exists ${schema}.schema_migrations (
       id integer primary key,
       name text not null,
       checksum text not null,
       applied_at timestamptz not null default now()
     )`
  )
  const { rows } = await client.query<{ id: number; name: string; checksum: string }>(
    `select id, name, checksum from ${schema}.schema_migrations order by id`
  )
  const done = new Map(rows.map((r) => [r.id, r]))
  for (const [id, row] of done) {
    const file = migrations.find((m) => m.id === id)
    if (file && file.checksum !== row.checksum) {
      throw new MigrationError({
        message: `${timeline.owner} migration ${String(id).padStart(4, "0")}_${row.name} was edited after it ran; add a new migration instead`
      })
    }
  }
  const applied: Array<AppliedMigration> = []
  for (const migration of migrations) {
    if (done.has(migration.id)) continue
    try {
      await client.query("begin")
      await client.query(`set local search_path to ${schema}, public`)
      await client.query(migration.sql)
      await client.query(`insert into ${schema}.schema_migrations (id, name, checksum) values ($1, $2, $3)`, [
        migration.id,
        migration.name,
        migration.checksum
      ])
      await client.query("commit")
    } catch (error) {
      await client.query("rollback").catch(() => undefined)
      throw new MigrationError({
        message: `${timeline.owner} migration ${String(migration.id).padStart(4, "0")}_${migration.name} failed: ${(error as Error).message}`
      })
    }
    applied.push({ owner: timeline.owner, id: migration.id, name: migration.name })
  }
  return applied
}

/** Lists timelines whose files include migrations the database has not applied yet. */
export const pendingMigrations = (pool: pg.Pool, timelines: ReadonlyArray<MigrationTimeline>) =>
  Effect.forEach(timelines, (timeline) =>
    Effect.gen(function* () {
      const migrations = yield* timeline.load
      const rows = yield* Effect.tryPromise({
        try: () =>
          pool
            .query<{ id: number }>(`select id from ${quoteIdent(timeline.schema)}.schema_migrations`)
            .then((r) => r.rows),
        catch: (error) => new MigrationError({ message: `${timeline.owner}: ${String(error)}` })
      })
      const done = new Set(rows.map((r) => r.id))
      return migrations.filter((m) => !done.has(m.id)).map((m) => `${timeline.owner}/${m.id}_${m.name}`)
    })
  ).pipe(Effect.map((lists) => lists.flat()))
