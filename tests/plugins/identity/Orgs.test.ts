import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { request } from "../../support/app.ts"
import { createTenant } from "../../support/tenants.ts"
import { startApp } from "./helpers.ts"

describe("identity: organisations", () => {
  it.scopedLive("the operator creates an organisation with its owner; nobody else can", () =>
    Effect.gen(function* () {
      const { base } = yield* startApp()
      const tenant = yield* createTenant(base, { permissions: ["ops:read", "identity:admin"] })
      const me = yield* request(base, "GET", "/api/v1/identity/me", undefined, { "x-api-key": tenant.apiKey })
      expect(me.status).toBe(200)
      expect(me.json.org.id).toBe(tenant.orgId)
      expect([...me.json.permissions].sort()).toEqual(["identity:admin", "ops:read"])
      const queues = yield* request(base, "GET", "/api/v1/ops/queues", undefined, tenant.headers)
      expect(queues.status).toBe(200)

      const byTenant = yield* request(
        base,
        "POST",
        "/api/v1/identity/orgs",
        { name: "sneaky", owner: { email: "x@example.test", password: "long-enough-password" } },
        tenant.headers
      )
      expect(byTenant.status).toBe(403)
      const other = yield* createTenant(base)
      expect(other.orgId).not.toBe(tenant.orgId)
      const members = yield* request(base, "GET", "/api/v1/identity/members", undefined, other.headers)
      expect(members.json.map((m: { email: string }) => m.email)).toEqual([other.owner.email])
      const missingPassword = yield* request(base, "POST", "/api/v1/identity/orgs", {
        name: "no password",
        owner: { email: "new-owner@example.test" }
      })
      expect(missingPassword.status).toBe(400)
      expect(missingPassword.json.field).toBe("owner.password")
    })
  )
})
