import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtemp, readFile, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { testDatabase } from "../../support/database.ts"
import { call, capturingStdout, identityPlugin, OWNER_EMAIL, OWNER_PASSWORD, startApp, tokensOf } from "./helpers.ts"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "trellis-identity-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

describe("identity bootstrap", () => {
  it.scopedLive("two instances starting at once on an empty database create exactly one owner", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const [first, second] = yield* Effect.all([startApp({ db }), startApp({ db })], { concurrency: 2 })
      const rows = yield* first.sql<{ users: number; orgs: number; owners: number; audits: number }>`
        select (select count(*) from identity.users)::int as users,
               (select count(*) from identity.orgs)::int as orgs,
               (select count(*) from identity.memberships where role = 'owner')::int as owners,
               (select count(*) from core.audit_log where action = 'identity.bootstrap')::int as audits`
      expect(rows[0]).toEqual({ users: 1, orgs: 1, owners: 1, audits: 1 })
      const viaFirst = yield* tokensOf(first.base, OWNER_EMAIL, OWNER_PASSWORD)
      const me = yield* call(second.base, "GET", "/api/v1/identity/me", { token: viaFirst.accessToken })
      expect(me.json).toMatchObject({ roles: ["owner"], org: { name: "Default" } })
    })
  )

  it.scopedLive("without a configured password one is generated and printed once", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const { result, stdout } = yield* capturingStdout(
        startApp({ db, env: { TRELLIS_BOOTSTRAP_EMAIL: "Root@Example.com" }, identity: identityPlugin({ bootstrapOrgName: "Acme" }) })
      )
      const password = /generated password \(shown once\):\n {2}(\S+)\n/.exec(stdout)?.[1]
      expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/)
      expect(stdout.split(password!)).toHaveLength(2)
      const tokens = yield* tokensOf(result.base, "root@example.com", password!)
      const me = yield* call(result.base, "GET", "/api/v1/identity/me", { token: tokens.accessToken })
      expect(me.json).toMatchObject({ org: { name: "Acme" }, roles: ["owner"] })

      // A restart finds the owner and creates nothing more.
      const again = yield* capturingStdout(startApp({ db, env: {} }))
      expect(again.stdout).not.toContain("generated password")
      const users = yield* result.sql<{ n: number }>`select count(*)::int as n from identity.users`
      expect(users[0]!.n).toBe(1)
    })
  )

  it.scopedLive("a generated JWT secret is kept in the data dir (mode 600), so tokens survive a restart", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const dataDir = yield* tempDir
      const plugin = identityPlugin({ jwtSecret: undefined })
      const env = { TRELLIS_DATA_DIR: dataDir, TRELLIS_BOOTSTRAP_PASSWORD: OWNER_PASSWORD, TRELLIS_BOOTSTRAP_EMAIL: OWNER_EMAIL }
      const token = yield* Effect.scoped(
        Effect.flatMap(startApp({ db, env, identity: plugin }), ({ base }) => tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD))
      )
      const file = join(dataDir, "jwt-secret")
      expect((yield* Effect.promise(() => stat(file))).mode & 0o777).toBe(0o600)
      const secret = (yield* Effect.promise(() => readFile(file, "utf8"))).trim()
      expect(secret.length).toBeGreaterThanOrEqual(32)

      const restarted = yield* startApp({ db, env, identity: plugin })
      expect((yield* call(restarted.base, "GET", "/api/v1/identity/me", { token: token.accessToken })).status).toBe(200)
      const elsewhere = yield* startApp({ db, env: { ...env, TRELLIS_DATA_DIR: join(dataDir, "other") }, identity: plugin })
      expect((yield* call(elsewhere.base, "GET", "/api/v1/identity/me", { token: token.accessToken })).status).toBe(401)
      const withEnv = yield* startApp({ db, env: { ...env, TRELLIS_JWT_SECRET: secret }, identity: plugin })
      expect((yield* call(withEnv.base, "GET", "/api/v1/identity/me", { token: token.accessToken })).status).toBe(200)
    })
  )

  it.scopedLive("a JWT secret shorter than 32 characters stops the start naming the variable", () =>
    Effect.gen(function* () {
      const failure = yield* Effect.flip(startApp({ env: { TRELLIS_JWT_SECRET: "too-short", TRELLIS_BOOTSTRAP_PASSWORD: OWNER_PASSWORD } }))
      expect(String(failure)).toContain("TRELLIS_JWT_SECRET must be at least 32 characters")
    })
  )
})
