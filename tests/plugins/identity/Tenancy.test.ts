import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect, Exit, Option } from "effect"
import { inTenant } from "../../../core/Tenancy.ts"
import { call, createOrg, createUser, defaultOrgId, OWNER_EMAIL, OWNER_PASSWORD, startApp, tokensOf } from "./helpers.ts"

/** The PostgreSQL error a statement failed with (42501: insufficient privilege or a policy violation). */
const pgError = (exit: Exit.Exit<unknown, SqlError>) => {
  if (Exit.isSuccess(exit)) return undefined
  const failure = Cause.failureOption(exit.cause)
  const cause = Option.isSome(failure) ? (failure.value.cause as { code?: string; routine?: string }) : {}
  return { code: cause.code, routine: cause.routine }
}

describe("identity tenancy", () => {
  it.scopedLive("an admin of org A sees and changes nothing of org B, and row-level security holds without where org_id", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgA = yield* defaultOrgId(sql)
      const orgB = yield* createOrg(sql, "B")
      const ownerB = yield* createUser(sql, "owner-b@example.com", "owner-b-password", [{ orgId: orgB, role: "owner" }])
      const a = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const b = yield* tokensOf(base, "owner-b@example.com", "owner-b-password")
      const keyOf = (token: string, name: string) =>
        Effect.map(
          call(base, "POST", "/api/v1/identity/api-keys", { token, body: { name, permissions: ["ops:read"] } }),
          (r) => r.json.id as string
        )
      const keyA = yield* keyOf(a.accessToken, "a-key")
      const keyB = yield* keyOf(b.accessToken, "b-key")
      const memberB = yield* call(base, "POST", "/api/v1/identity/users", {
        token: b.accessToken,
        body: { email: "staff-b@example.com", password: "staff-b-password", role: "staff" }
      })
      expect(memberB.status).toBe(201)

      const keysA = yield* call(base, "GET", "/api/v1/identity/api-keys", { token: a.accessToken })
      expect(keysA.json.map((k: { id: string }) => k.id)).toEqual([keyA])
      expect((yield* call(base, "DELETE", `/api/v1/identity/api-keys/${keyB}`, { token: a.accessToken })).status).toBe(404)
      const membersA = yield* call(base, "GET", "/api/v1/identity/members", { token: a.accessToken })
      expect(membersA.json.map((m: { email: string }) => m.email)).toEqual([OWNER_EMAIL])
      const patch = yield* call(base, "PATCH", `/api/v1/identity/members/${ownerB}`, { token: a.accessToken, body: { role: "viewer" } })
      expect(patch.status).toBe(404)
      const remove = yield* call(base, "DELETE", `/api/v1/identity/members/${memberB.json.userId}`, { token: a.accessToken })
      expect(remove.status).toBe(404)

      const auditA = yield* call(base, "GET", "/api/v1/identity/audit?limit=200", { token: a.accessToken })
      const auditB = yield* call(base, "GET", "/api/v1/identity/audit?limit=200", { token: b.accessToken })
      expect(auditB.json.items.map((e: { targetId: string }) => e.targetId)).toEqual(expect.arrayContaining([keyB, memberB.json.userId]))
      const targetsA = auditA.json.items.map((e: { targetId: string }) => e.targetId)
      expect(targetsA).toContain(keyA)
      for (const id of [keyB, ownerB, memberB.json.userId]) expect(targetsA).not.toContain(id)
      const idsB = new Set(auditB.json.items.map((e: { id: number }) => e.id))
      expect(auditA.json.items.some((e: { id: number }) => idsB.has(e.id))).toBe(false)

      // Deliberately careless queries inside A's tenant transaction.
      const inA = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
        inTenant(orgA, effect).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      const keys = yield* inA(sql<{ org_id: string }>`select org_id from identity.api_keys`)
      expect(keys.map((k) => k.org_id)).toEqual([orgA])
      const memberships = yield* inA(sql<{ org_id: string }>`select org_id from identity.memberships`)
      expect(new Set(memberships.map((m) => m.org_id))).toEqual(new Set([orgA]))
      const emails = yield* inA(sql<{ email: string }>`select email from identity.users`)
      expect(emails.map((u) => u.email)).toEqual([OWNER_EMAIL])
      const orgs = yield* inA(sql<{ id: string }>`select id from identity.orgs`)
      expect(orgs.map((o) => o.id)).toEqual([orgA])
      const hashes = yield* Effect.exit(inA(sql`select password_hash from identity.users`))
      expect(pgError(hashes)).toEqual({ code: "42501", routine: "aclcheck_error" })
      const intrusion = yield* Effect.exit(
        inA(
          sql`insert into identity.api_keys (org_id, name, permissions, secret_hash, created_by)
              values (${orgB}, 'planted', '{ops:read}', '\\x00', 'test')`
        )
      )
      expect(pgError(intrusion)).toEqual({ code: "42501", routine: "ExecWithCheckOptions" })
      const planted = yield* sql<{ n: number }>`select count(*)::int as n from identity.api_keys where name = 'planted'`
      expect(planted[0]!.n).toBe(0)
    })
  )

  it.scopedLive("only an owner grants the owner role, and the last owner can be neither demoted nor removed", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgId = yield* defaultOrgId(sql)
      const owner = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const ownerId = (yield* call(base, "GET", "/api/v1/identity/me", { token: owner.accessToken })).json.id
      const adminId = yield* createUser(sql, "admin@example.com", "admin-password-1", [{ orgId, role: "admin" }])
      const admin = yield* tokensOf(base, "admin@example.com", "admin-password-1")
      const patch = (token: string, userId: string, role: string) =>
        call(base, "PATCH", `/api/v1/identity/members/${userId}`, { token, body: { role } })

      const grant = yield* patch(admin.accessToken, adminId, "owner")
      expect(grant.status).toBe(403)
      expect(grant.json.permission).toBe("identity:owner")
      expect((yield* patch(admin.accessToken, ownerId, "viewer")).status).toBe(403)
      const addOwner = yield* call(base, "POST", "/api/v1/identity/users", {
        token: admin.accessToken,
        body: { email: "new-owner@example.com", password: "new-owner-password", role: "owner" }
      })
      expect(addOwner.status).toBe(403)

      const demoteSelf = yield* patch(owner.accessToken, ownerId, "admin")
      expect(demoteSelf.status).toBe(409)
      const removeSelf = yield* call(base, "DELETE", `/api/v1/identity/members/${ownerId}`, { token: owner.accessToken })
      expect(removeSelf.status).toBe(409)

      expect((yield* patch(owner.accessToken, adminId, "owner")).json).toMatchObject({ userId: adminId, role: "owner" })
      // Two owners demoting each other at once: one of them must stay owner.
      const both = yield* Effect.all([patch(owner.accessToken, adminId, "viewer"), patch(admin.accessToken, ownerId, "viewer")], {
        concurrency: 2
      })
      // The loser is refused as the last owner (409), or as no longer an owner (403) when the
      // winner committed before the loser's credential was checked.
      expect(both.filter((r) => r.status === 200)).toHaveLength(1)
      expect([403, 409]).toContain(both.find((r) => r.status !== 200)!.status)
      const owners = yield* sql<{ n: number }>`select count(*)::int as n from identity.memberships where role = 'owner'`
      expect(owners[0]!.n).toBe(1)
    })
  )

  it.scopedLive("admins add new and existing users; a new user needs a password and an existing one none", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const orgB = yield* createOrg(sql, "B")
      yield* createUser(sql, "shared@example.com", "shared-password-1", [{ orgId: orgB, role: "viewer" }])
      const owner = yield* tokensOf(base, OWNER_EMAIL, OWNER_PASSWORD)
      const add = (body: unknown) => call(base, "POST", "/api/v1/identity/users", { token: owner.accessToken, body })

      const fresh = yield* add({ email: "New@Example.com ", password: "new-user-password", role: "staff" })
      expect(fresh.status).toBe(201)
      expect(fresh.json).toMatchObject({ email: "new@example.com", role: "staff" })
      expect((yield* tokensOf(base, "new@example.com", "new-user-password")).accessToken).toEqual(expect.any(String))
      expect((yield* add({ email: "new@example.com", role: "viewer" })).status).toBe(409)
      const noPassword = yield* add({ email: "other@example.com", role: "staff" })
      expect(noPassword.json).toMatchObject({ field: "password" })
      const short = yield* add({ email: "other@example.com", password: "short", role: "staff" })
      expect(short.status).toBe(400)
      expect(short.text).toContain("password")
      const takeover = yield* add({ email: "shared@example.com", password: "attacker-password", role: "staff" })
      expect(takeover.status).toBe(409)
      expect((yield* add({ email: "shared@example.com", role: "viewer" })).status).toBe(201)
      // The existing user's password is unchanged and they now choose between two orgs.
      const defaultOrg = yield* defaultOrgId(sql)
      const shared = yield* tokensOf(base, "shared@example.com", "shared-password-1", defaultOrg)
      expect(shared.accessToken).toEqual(expect.any(String))
      const badRole = yield* add({ email: "x@example.com", password: "long-enough-password", role: "superuser" })
      expect(badRole.status).toBe(400)
      expect(badRole.text).toContain("role")
    })
  )
})
