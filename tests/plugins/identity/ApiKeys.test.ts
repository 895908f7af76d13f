import { describe, expect, it } from "@effect/vitest"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { inject } from "vitest"
import { Effect } from "effect"
import { withRedis } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"
import { call, createUser, defaultOrgId, identityPlugin, OWNER_EMAIL, OWNER_PASSWORD, startApp, tokensOf } from "./helpers.ts"

describe("identity API keys", () => {
  it.scopedLive("a key is shown once, acts with exactly its permissions, and is 401 right after revocation", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const owner = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const created = yield* call(base, "POST", "/api/v1/identity/api-keys", {
        token: owner.accessToken,
        body: { name: "dashboards", permissions: ["ops:read"] }
      })
      expect(created.status).toBe(201)
      expect(created.json).toMatchObject({ name: "dashboards", permissions: ["ops:read"], revokedAt: null, lastUsedAt: null })
      const key: string = created.json.key
      expect(key).toMatch(new RegExp(`^trl_${created.json.id}_[A-Za-z0-9_-]{43}$`))
      const secret = key.slice(`trl_${created.json.id}_`.length)

      const listed = yield* call(base, "GET", "/api/v1/identity/api-keys", { token: owner.accessToken })
      expect(listed.json.map((k: { id: string }) => k.id)).toEqual([created.json.id])
      expect(listed.text).not.toContain(secret)
      expect(listed.json[0]).not.toHaveProperty("key")
      const stored = yield* sql<{ row: string }>`select row_to_json(k)::text as row from identity.api_keys k`
      expect(stored[0]!.row).not.toContain(secret)

      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: key })).status).toBe(200)
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { token: key })).status).toBe(200)
      const write = yield* call(base, "POST", "/api/v1/ops/dead-letters/discard", { apiKey: key, body: { ids: [1] } })
      expect(write.status).toBe(403)
      expect(write.json).toMatchObject({ permission: "ops:write", message: "missing permission ops:write" })
      const me = yield* call(base, "GET", "/api/v1/identity/me", { apiKey: key })
      expect(me.json).toMatchObject({ kind: "api_key", id: created.json.id, user: null, org: { name: "Default" }, permissions: ["ops:read"] })

      const wrongSecret = `trl_${created.json.id}_${"A".repeat(43)}`
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: wrongSecret })).status).toBe(401)

      const revoked = yield* call(base, "DELETE", `/api/v1/identity/api-keys/${created.json.id}`, { token: owner.accessToken })
      expect(revoked.status).toBe(204)
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: key })).status).toBe(401)
      const again = yield* call(base, "DELETE", `/api/v1/identity/api-keys/${created.json.id}`, { token: owner.accessToken })
      expect(again.status).toBe(404)
      const audit = yield* call(base, "GET", "/api/v1/identity/audit?targetType=api_key", { token: owner.accessToken })
      expect(audit.json.items.map((e: { action: string }) => e.action)).toEqual(["identity.api_key_revoked", "identity.api_key_created"])
    })
  )

  it.scopedLive("last_used_at is written on use, at most once a minute", () =>
    Effect.gen(function* () {
      // Uncached, so the database's last_used_at is what decides: the test ages it instead of waiting a minute.
      const { base, sql } = yield* startApp({ identity: identityPlugin({ credentialCacheSeconds: 0 }) })
      const owner = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const { json } = yield* call(base, "POST", "/api/v1/identity/api-keys", {
        token: owner.accessToken,
        body: { name: "hot", permissions: ["ops:read"] }
      })
      const lastUsed = Effect.map(
        sql<{ at: Date | null }>`select last_used_at as at from identity.api_keys where id = ${json.id}`,
        (rows) => rows[0]!.at
      )
      yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: json.key })
      const first = yield* lastUsed
      expect(first).toBeInstanceOf(Date)
      yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: json.key })
      expect((yield* lastUsed)!.getTime()).toBe(first!.getTime())
      yield* sql`update identity.api_keys set last_used_at = now() - interval '2 minutes' where id = ${json.id}`
      const aged = yield* lastUsed
      yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: json.key })
      expect((yield* lastUsed)!.getTime()).toBeGreaterThan(aged!.getTime())
    })
  )

  it.scopedLive("keys take registered permissions the creator holds, expire, and need identity:admin", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgId = yield* defaultOrgId(sql)
      yield* createUser(sql, "admin@example.com", "admin-password-1", [{ orgId, role: "admin" }])
      yield* createUser(sql, "staff@example.com", "staff-password-1", [{ orgId, role: "staff" }])
      const admin = yield* tokensOf(base, "admin@example.com", "admin-password-1")
      const staff = yield* tokensOf(base, "staff@example.com", "staff-password-1")
      const create = (token: string, body: unknown) => call(base, "POST", "/api/v1/identity/api-keys", { token, body })

      const unknown = yield* create(admin.accessToken, { name: "x", permissions: ["ops:read", "billing:write"] })
      expect(unknown.status).toBe(400)
      expect(unknown.json).toMatchObject({ field: "permissions", message: "unknown permission billing:write" })
      const star = yield* create(admin.accessToken, { name: "x", permissions: ["*"] })
      expect(star.status).toBe(400)
      const stronger = yield* create(admin.accessToken, { name: "x", permissions: ["identity:owner"] })
      expect(stronger.status).toBe(403)
      expect(stronger.json.permission).toBe("identity:owner")
      const byStaff = yield* create(staff.accessToken, { name: "x", permissions: ["ops:read"] })
      expect(byStaff.status).toBe(403)
      expect(byStaff.json.permission).toBe("identity:admin")
      const noName = yield* create(admin.accessToken, { permissions: ["ops:read"] })
      expect(noName.status).toBe(400)
      expect(noName.text).toContain("name")
      const past = yield* create(admin.accessToken, { name: "x", permissions: ["ops:read"], expiresAt: "2020-01-01T00:00:00Z" })
      expect(past.json).toMatchObject({ field: "expiresAt" })

      // Used (and so cached) before it expires: the expiry still applies to the cached key.
      const expiresAt = Date.now() + 1_500
      const expiring = yield* create(admin.accessToken, { name: "soon", permissions: ["ops:read"], expiresAt: new Date(expiresAt).toISOString() })
      expect(expiring.status).toBe(201)
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: expiring.json.key })).status).toBe(200)
      yield* Effect.sleep(Math.max(0, expiresAt - Date.now()) + 50)
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: expiring.json.key })).status).toBe(401)
    })
  )

  it.scopedLive("with Redis, a key revoked and a member removed through one instance are refused by another on the next request", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const a = yield* startApp({ db, config: withRedis() })
      const b = yield* startApp({ db, config: withRedis() })
      const owner = yield* tokensOf(a.base, OWNER_EMAIL, OWNER_PASSWORD)
      const orgId = yield* defaultOrgId(a.sql)
      const userId = yield* createUser(a.sql, "staff@example.com", "staff-password-1", [{ orgId, role: "staff" }])
      const staff = yield* tokensOf(a.base, "staff@example.com", "staff-password-1")
      const created = yield* call(a.base, "POST", "/api/v1/identity/api-keys", { token: owner.accessToken, body: { name: "k", permissions: ["ops:read"] } })
      // Both credentials verified (and cached) by instance B first.
      expect((yield* call(b.base, "GET", "/api/v1/ops/queues", { apiKey: created.json.key })).status).toBe(200)
      expect((yield* call(b.base, "GET", "/api/v1/identity/me", { token: staff.accessToken })).status).toBe(200)
      expect((yield* call(a.base, "DELETE", `/api/v1/identity/api-keys/${created.json.id}`, { token: owner.accessToken })).status).toBe(204)
      expect((yield* call(a.base, "DELETE", `/api/v1/identity/members/${userId}`, { token: owner.accessToken })).status).toBe(204)
      expect((yield* call(b.base, "GET", "/api/v1/ops/queues", { apiKey: created.json.key })).status).toBe(401)
      expect((yield* call(b.base, "GET", "/api/v1/identity/me", { token: staff.accessToken })).status).toBe(401)
    })
  )

  it.scopedLive("a credential that cannot be checked because the database is down is a 503, not a 401 or a 500", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const { base } = yield* startApp({ db })
      const admin = (text: string) =>
        Effect.promise(async () => {
          const client = new pg.Client({ connectionString: inject("adminDatabaseUrl") })
          await client.connect()
          try {
            await client.query(text)
          } finally {
            await client.end()
          }
        })
      const unknownKey = `trl_${randomUUID()}_${"A".repeat(43)}`
      yield* admin(`alter database ${db.name} allow_connections false`)
      yield* admin(`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${db.name}'`)
      const down = yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: unknownKey })
      yield* admin(`alter database ${db.name} allow_connections true`)
      expect(down.status).toBe(503)
      expect(down.json).toMatchObject({ _tag: "ServiceUnavailable" })
      // Back up: the same key is checked again, and is simply unknown.
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: unknownKey })).status).toBe(401)
    })
  )
})
