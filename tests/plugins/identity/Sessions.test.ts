import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { decodeJwt, SignJWT } from "jose"
import { randomUUID } from "node:crypto"
import { call, createUser, defaultOrgId, identityPlugin, JWT_SECRET, login, OWNER_EMAIL, OWNER_PASSWORD, startApp, tokensOf } from "./helpers.ts"

const key = (secret: string) => new TextEncoder().encode(secret)

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")

describe("identity sessions", () => {
  it.scopedLive("login returns tokens and /me shows the user, org, roles and expanded permissions", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgId = yield* defaultOrgId(sql)
      const response = yield* login(base, OWNER_EMAIL, OWNER_PASSWORD)
      expect(response.status).toBe(200)
      expect(response.headers.get("cache-control")).toBe("no-store")
      expect(response.json).toMatchObject({ tokenType: "Bearer", expiresIn: 900 })
      expect(response.json.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/)
      const claims = decodeJwt(response.json.accessToken)
      expect(claims).toMatchObject({ org: orgId, roles: ["owner"], iss: "trellis" })
      expect(claims.exp! - claims.iat!).toBe(900)
      expect(typeof claims.jti).toBe("string")

      const me = yield* call(base, "GET", "/api/v1/identity/me", { token: response.json.accessToken })
      expect(me.status).toBe(200)
      expect(me.json).toMatchObject({
        kind: "user",
        id: claims.sub,
        user: { id: claims.sub, email: OWNER_EMAIL },
        org: { id: orgId, name: "Default" },
        roles: ["owner"]
      })
      expect(me.json.permissions).toEqual(expect.arrayContaining(["ops:read", "ops:write", "identity:admin", "identity:owner"]))
    })
  )

  it.scopedLive("a viewer reads but cannot write; a member picks one of several orgs per token", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgA = yield* defaultOrgId(sql)
      const orgB = yield* Effect.map(sql<{ id: string }>`insert into identity.orgs (name) values ('B') returning id`, (r) => r[0]!.id)
      yield* createUser(sql, "viewer@example.com", "viewer-password-1", [
        { orgId: orgA, role: "viewer" },
        { orgId: orgB, role: "staff" }
      ])
      const viewer = yield* tokensOf(base, "viewer@example.com", "viewer-password-1")
      expect(decodeJwt(viewer.accessToken)).toMatchObject({ org: orgA, roles: ["viewer"] })
      const read = yield* call(base, "GET", "/api/v1/ops/queues", { token: viewer.accessToken })
      expect(read.status).toBe(200)
      const write = yield* call(base, "POST", "/api/v1/ops/dead-letters/discard", { token: viewer.accessToken, body: { ids: [1] } })
      expect(write.status).toBe(403)
      expect(write.json.permission).toBe("ops:write")
      const keys = yield* call(base, "GET", "/api/v1/identity/api-keys", { token: viewer.accessToken })
      expect(keys.status).toBe(403)

      const staff = yield* tokensOf(base, "viewer@example.com", "viewer-password-1", orgB)
      expect(decodeJwt(staff.accessToken)).toMatchObject({ org: orgB, roles: ["staff"] })
      const stranger = yield* login(base, "viewer@example.com", "viewer-password-1", randomUUID())
      expect(stranger.status).toBe(403)
    })
  )

  it.scopedLive("tampered, expired, alg none, wrong-key and unknown-issuer tokens are 401", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgId = yield* defaultOrgId(sql)
      const viewerId = yield* createUser(sql, "v@example.com", "viewer-password-1", [{ orgId, role: "viewer" }])
      const { accessToken } = yield* tokensOf(base, "v@example.com", "viewer-password-1")
      const me = (token: string) => Effect.map(call(base, "GET", "/api/v1/identity/me", { token }), (r) => r.status)
      expect(yield* me(accessToken)).toBe(200)

      const [header, payload, signature] = accessToken.split(".")
      const claims = JSON.parse(Buffer.from(payload!, "base64url").toString())
      const tampered = `${header}.${b64({ ...claims, roles: ["owner"], sub: viewerId })}.${signature}`
      expect(yield* me(tampered)).toBe(401)

      const sign = (secret: string, expiresAt: number, issuer = "trellis") =>
        Effect.promise(() =>
          new SignJWT({ org: orgId, roles: ["viewer"] })
            .setProtectedHeader({ alg: "HS256" })
            .setSubject(viewerId)
            .setJti(randomUUID())
            .setIssuer(issuer)
            .setIssuedAt(expiresAt - 900)
            .setExpirationTime(expiresAt)
            .sign(key(secret))
        )
      const now = Math.floor(Date.now() / 1000)
      expect(yield* me(yield* sign(JWT_SECRET, now + 600))).toBe(200)
      expect(yield* me(yield* sign(JWT_SECRET, now - 10))).toBe(401)
      expect(yield* me(yield* sign("another-secret-0123456789abcdefghijklmn", now + 600))).toBe(401)
      expect(yield* me(yield* sign(JWT_SECRET, now + 600, "someone-else"))).toBe(401)
      const none = `${b64({ alg: "none", typ: "JWT" })}.${b64({ ...claims, exp: now + 600 })}.`
      expect(yield* me(none)).toBe(401)
      expect(yield* me("not-a-token")).toBe(401)
      // Accepted (and remembered as verified) shortly before it expires: refused once it has.
      const shortLived = yield* sign(JWT_SECRET, Math.floor(Date.now() / 1000) + 2)
      expect(yield* me(shortLived)).toBe(200)
      yield* Effect.sleep("2100 millis")
      expect(yield* me(shortLived)).toBe(401)
    })
  )

  it.scopedLive("a removed member's token and a demoted member's permissions change on the next request", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgId = yield* defaultOrgId(sql)
      const userId = yield* createUser(sql, "staff@example.com", "staff-password-1", [{ orgId, role: "staff" }])
      const { accessToken, refreshToken } = yield* tokensOf(base, "staff@example.com", "staff-password-1")
      const owner = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const discard = () => call(base, "POST", "/api/v1/ops/dead-letters/discard", { token: accessToken, body: { ids: [1] } })
      expect((yield* discard()).status).toBe(200)
      const demoted = yield* call(base, "PATCH", `/api/v1/identity/members/${userId}`, { token: owner.accessToken, body: { role: "viewer" } })
      expect(demoted.json).toMatchObject({ userId, role: "viewer" })
      expect((yield* discard()).status).toBe(403)
      const removed = yield* call(base, "DELETE", `/api/v1/identity/members/${userId}`, { token: owner.accessToken })
      expect(removed.status).toBe(204)
      expect((yield* call(base, "GET", "/api/v1/identity/me", { token: accessToken })).status).toBe(401)
      expect((yield* call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken } })).status).toBe(401)
    })
  )

  it.scopedLive("refresh rotates; reusing a spent token revokes the family, the newest token too; logout revokes", () =>
    Effect.gen(function* () {
      const { base } = yield* startApp()
      const first = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const refresh = (refreshToken: string) => call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken } })
      const second = yield* refresh(first.refreshToken)
      expect(second.status).toBe(200)
      expect(second.json.refreshToken).not.toBe(first.refreshToken)
      expect((yield* call(base, "GET", "/api/v1/identity/me", { token: second.json.accessToken })).status).toBe(200)
      const third = yield* refresh(second.json.refreshToken)
      expect(third.status).toBe(200)

      const replay = yield* refresh(first.refreshToken)
      expect(replay.status).toBe(401)
      expect((yield* refresh(third.json.refreshToken)).status).toBe(401)

      const other = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const logout = yield* call(base, "POST", "/api/v1/identity/logout", { body: { refreshToken: other.refreshToken } })
      expect(logout.status).toBe(204)
      expect((yield* refresh(other.refreshToken)).status).toBe(401)
      expect((yield* refresh("x".repeat(43))).status).toBe(401)
    })
  )

  it.scopedLive("of 20 concurrent refreshes of one token exactly one succeeds", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const { refreshToken } = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const results = yield* Effect.all(
        Array.from({ length: 20 }, () => call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken } })),
        { concurrency: "unbounded" }
      )
      expect(results.filter((r) => r.status === 200)).toHaveLength(1)
      expect(results.filter((r) => r.status === 401)).toHaveLength(19)
      // The losers presented a spent token: the family is revoked and that was audited once.
      const reuse = yield* sql<{ n: number }>`select count(*)::int as n from core.audit_log where action = 'identity.refresh_reuse'`
      expect(reuse[0]!.n).toBe(1)
    })
  )

  it.scopedLive("identity.prune drops sessions whose tokens all expired and stale lockout counters", () =>
    Effect.gen(function* () {
      const plugin = identityPlugin()
      const { base, context, sql } = yield* startApp({ identity: plugin })
      const live = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const dead = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      yield* login(base, "stale@example.com", "wrong-password")
      yield* login(base, "fresh@example.com", "wrong-password")
      yield* sql`update identity.refresh_tokens set expires_at = now() - interval '1 day'
                  where token_hash = sha256(convert_to(${dead.refreshToken}, 'UTF8'))`
      yield* sql`update identity.refresh_families set created_at = now() - interval '2 hours'`
      // The first counter (stale@) falls out of its 15-minute window.
      yield* sql`update identity.login_attempts set window_started_at = now() - interval '1 hour'
                  where email_key = (select email_key from identity.login_attempts order by window_started_at limit 1)`
      const prune = plugin.tasks.find((t) => t.id === "identity.prune")!
      yield* prune.handler({}).pipe(Effect.provide(context))
      const families = yield* sql<{ n: number }>`select count(*)::int as n from identity.refresh_families`
      expect(families[0]!.n).toBe(1)
      expect((yield* call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken: live.refreshToken } })).status).toBe(200)
      const attempts = yield* sql<{ n: number }>`select count(*)::int as n from identity.login_attempts`
      expect(attempts[0]!.n).toBe(1)
    })
  )

  it.scopedLive("every identity route declares x-required-permission in the OpenAPI document", () =>
    Effect.gen(function* () {
      const { base } = yield* startApp()
      const spec = (yield* call(base, "GET", "/openapi.json")).json
      const operations = Object.entries(spec.paths as Record<string, Record<string, Record<string, unknown>>>)
        .filter(([path]) => path.startsWith("/api/v1/identity"))
        .flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ route: `${method} ${path}`, op })))
      expect(operations.length).toBeGreaterThanOrEqual(12)
      for (const { route, op } of operations) expect(op["x-required-permission"], route).toEqual(expect.any(String))
      const byRoute = new Map(operations.map(({ route, op }) => [route, op]))
      expect(byRoute.get("post /api/v1/identity/login")).toMatchObject({ "x-required-permission": "none", security: [] })
      expect(byRoute.get("get /api/v1/identity/api-keys")).toMatchObject({
        "x-required-permission": "identity:admin",
        description: "Requires permission identity:admin"
      })
      expect((byRoute.get("get /api/v1/identity/api-keys")!.security as Array<unknown>).length).toBeGreaterThan(0)
    })
  )

  it.scopedLive("a user changes their password with the current one; every refresh token dies; keys and wrong passwords are refused", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgId = yield* defaultOrgId(sql)
      yield* createUser(sql, "staff@example.com", "staff-password-1", [{ orgId, role: "staff" }])
      const first = yield* tokensOf(base, "staff@example.com", "staff-password-1")
      const second = yield* tokensOf(base, "staff@example.com", "staff-password-1")
      const change = (token: string, body: unknown) => call(base, "POST", "/api/v1/identity/password", { token, body })

      const wrong = yield* change(first.accessToken, { currentPassword: "not-it", newPassword: "a-new-password-2" })
      expect(wrong.status).toBe(403)
      expect(wrong.json.message).toBe("the current password is not correct")
      const short = yield* change(first.accessToken, { currentPassword: "staff-password-1", newPassword: "short" })
      expect(short.status).toBe(400)
      expect(short.text).toContain("newPassword")
      expect(short.text).not.toContain("short\"")

      expect((yield* change(first.accessToken, { currentPassword: "staff-password-1", newPassword: "a-new-password-2" })).status).toBe(204)
      expect((yield* login(base, "staff@example.com", "staff-password-1")).status).toBe(401)
      expect((yield* login(base, "staff@example.com", "a-new-password-2")).status).toBe(200)
      // Both sessions opened with the old password are gone.
      for (const session of [first, second]) {
        expect((yield* call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken: session.refreshToken } })).status).toBe(401)
      }
      const owner = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const key = yield* call(base, "POST", "/api/v1/identity/api-keys", { token: owner.accessToken, body: { name: "k", permissions: ["ops:read"] } })
      const byKey = yield* call(base, "POST", "/api/v1/identity/password", { apiKey: key.json.key, body: { currentPassword: "x", newPassword: "a-new-password-3" } })
      expect(byKey.status).toBe(403)
      const audit = yield* call(base, "GET", "/api/v1/identity/audit?targetType=user", { token: owner.accessToken })
      const actions = audit.json.items.map((e: { action: string }) => e.action)
      expect(actions).toContain("identity.password_changed")
      expect(actions).toContain("identity.password_change_failed")
    })
  )
})
