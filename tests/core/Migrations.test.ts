import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pg from "pg"
import { makePool } from "../../core/Database.ts"
import { loadMigrationDir, migrate, type MigrationTimeline } from "../../core/Migrations.ts"
import { buildRegistry } from "../../core/Registry.ts"
import { migrationTimelines } from "../../runtime/App.ts"
import { testDatabase } from "../support/database.ts"
import { allPlugins } from "../support/template.ts"

const withPool = <A, E, R>(url: string, f: (pool: pg.Pool) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => makePool({ url: Redacted.make(url), max: 3 })),
    f,
    (pool) => Effect.promise(() => pool.end())
  )

const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "trellis-migrations-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

describe("migrations", () => {
  it.scopedLive("three processes starting at once migrate exactly once", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase({ empty: true })
      const timelines = migrationTimelines(buildRegistry(yield* Effect.promise(allPlugins)))
      const expected = yield* Effect.forEach(timelines, (t) => Effect.map(t.load, (m) => m.length))
      const applied = yield* Effect.all(
        [1, 2, 3].map(() => withPool(db.url, (pool) => migrate(pool, timelines))),
        { concurrency: "unbounded" }
      )
      // Exactly one of the three applied everything; the others found nothing to do.
      const counts = applied.map((a) => a.length).sort()
      expect(counts).toEqual([0, 0, expected.reduce((a, b) => a + b, 0)])
      yield* withPool(db.url, (pool) =>
        Effect.gen(function* () {
          for (const [index, timeline] of timelines.entries()) {
            const { rows } = yield* Effect.promise(() =>
              pool.query(`select count(*)::int as n from "${timeline.schema}".schema_migrations`)
            )
            expect(rows[0].n).toBe(expected[index])
          }
          const { rows } = yield* Effect.promise(() =>
            pool.query("select count(*)::int as n from information_schema.schemata where schema_name = 'graphile_worker'")
          )
          expect(rows[0].n).toBe(1)
        })
      )
    })
  )

  it.scopedLive("a plugin timeline runs in its own schema, and an edited landed migration is refused", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase({ empty: true })
      const dir = yield* tempDir
      yield* Effect.promise(() => writeFile(join(dir, "0001_widgets.sql"), "create table widgets (id int primary key);"))
      const timeline: MigrationTimeline = { owner: "widgets", schema: "widgets", load: loadMigrationDir(dir) }
      yield* withPool(db.url, (pool) => migrate(pool, [timeline]))
      yield* withPool(db.url, (pool) =>
        Effect.promise(() => pool.query("insert into widgets.widgets (id) values (1)"))
      )
      yield* Effect.promise(() =>
        writeFile(join(dir, "0001_widgets.sql"), "create table widgets (id int primary key, name text);")
      )
      const error = yield* withPool(db.url, (pool) => migrate(pool, [timeline])).pipe(Effect.flip)
      expect(error.message).toContain("widgets migration 0001_widgets was edited after it ran")
    })
  )

  it.scopedLive("a failing migration rolls back and names itself", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase({ empty: true })
      const dir = yield* tempDir
      yield* Effect.promise(() => writeFile(join(dir, "0001_ok.sql"), "create table ok (id int);"))
      yield* Effect.promise(() =>
        writeFile(join(dir, "0002_broken.sql"), "create table half (id int); select * from no_such_table;")
      )
      const timeline: MigrationTimeline = { owner: "broken", schema: "broken", load: loadMigrationDir(dir) }
      const error = yield* withPool(db.url, (pool) => migrate(pool, [timeline])).pipe(Effect.flip)
      expect(error.message).toContain("broken migration 0002_broken failed")
      const tables = yield* withPool(db.url, (pool) =>
        Effect.promise(() =>
          pool.query("select table_name from information_schema.tables where table_schema = 'broken' order by 1")
        )
      )
      expect(tables.rows.map((r) => r.table_name)).toEqual(["ok", "schema_migrations"])
    })
  )
})
