import SwaggerParser from "@apidevtools/swagger-parser"
import { describe, expect, it } from "@effect/vitest"
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Effect, Schema } from "effect"
import { Authentication } from "../../../core/Auth.ts"
import { Forbidden, ServiceUnavailable } from "../../../core/Errors.ts"
import { requireFlag } from "../../../core/FeatureGate.ts"
import { definePlugin } from "../../../core/Plugin.ts"
import { IdentityOptions } from "../../../plugins/identity/Domain.ts"
import { identity } from "../../../plugins/identity/index.ts"
import { ADMIN_KEY, request, withRedis } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"
import { ops } from "../../../plugins/ops/index.ts"
import { createTenant } from "../../support/tenants.ts"
import { waitFor } from "../../support/wait.ts"
import { startApp } from "./support.ts"

/** A route of another plugin guarded by a kill switch, as a plugin author would write it. */
class DemoApi extends HttpApi.make("demo").add(
  HttpApiGroup.make("demo")
    .add(HttpApiEndpoint.get("checkout", "/checkout").addSuccess(Schema.Struct({ ok: Schema.Boolean })))
    .addError(ServiceUnavailable)
    .addError(Forbidden)
    .middleware(Authentication)
    .prefix("/api/v1/demo")
) {}

const demoPlugin = definePlugin({
  name: "demo",
  api: DemoApi,
  http: HttpApiBuilder.group(DemoApi, "demo", (handlers) =>
    handlers.handle("checkout", () => Effect.as(requireFlag("demo.kill"), { ok: true }))
  ),
  migrations: { load: Effect.succeed([]) }
})

const identityPlugin = identity.make(Schema.decodeUnknownSync(IdentityOptions)({}))

const start = (options: Parameters<typeof startApp>[0] = {}) => startApp({ ...options, http: true, plugins: [identityPlugin, demoPlugin] })

const production = (strategies: ReadonlyArray<unknown>) => ({ production: { enabled: true, strategies } })

const jsonVariants = [
  { name: "blue", weight: 500, stickiness: "userId", payload: { type: "json", value: '{"color":"blue"}' } },
  { name: "green", weight: 500, stickiness: "userId", payload: { type: "json", value: '{"color":"green"}' } }
]

const ofrep = (base: string, headers: Record<string, string>, key: string | undefined, body?: unknown, extra: Record<string, string> = {}) =>
  request(base, "POST", key === undefined ? "/ofrep/v1/evaluate/flags" : `/ofrep/v1/evaluate/flags/${key}`, body, { ...headers, ...extra })

describe("flags over HTTP", () => {
  it.scopedLive("OFREP single evaluation: the protocol's shapes, reasons, typed values and error codes", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const { headers } = yield* createTenant(base)
      const create = (flag: Record<string, unknown>) =>
        Effect.tap(request(base, "POST", "/api/v1/flags", flag, headers), (r) => Effect.sync(() => expect(r.status).toBe(201)))
      yield* create({ key: "bool.on", type: "release", environments: production([{ name: "default" }]) })
      yield* create({ key: "json.theme", type: "experiment", environments: production([{ name: "default" }]), variants: jsonVariants })
      yield* create({
        key: "sticky.rollout",
        type: "release",
        environments: production([{ name: "flexibleRollout", parameters: { rollout: 50, stickiness: "userId" } }])
      })

      const on = yield* ofrep(base, headers, "bool.on", { context: { targetingKey: "u-1" } })
      expect(on.status).toBe(200)
      expect(on.json).toEqual({ key: "bool.on", value: true, reason: "STATIC", metadata: { flagType: "release", environment: "production" } })
      const development = yield* ofrep(base, headers, "bool.on", { context: { targetingKey: "u-1", environment: "development" } })
      expect(development.json).toEqual({ key: "bool.on", value: false, reason: "DISABLED", metadata: { flagType: "release", environment: "development" } })
      expect((yield* ofrep(base, headers, "bool.on")).json.value).toBe(true)

      const theme = yield* ofrep(base, headers, "json.theme", { context: { targetingKey: "u-1" } })
      expect(theme.status).toBe(200)
      expect(theme.json.reason).toBe("SPLIT")
      expect(theme.json.value).toEqual({ color: theme.json.variant })

      const missing = yield* ofrep(base, headers, "sticky.rollout", { context: { country: "NL" } })
      expect(missing.status).toBe(400)
      expect(missing.json).toMatchObject({ key: "sticky.rollout", errorCode: "TARGETING_KEY_MISSING" })
      expect(missing.json.errorDetails).toContain("userId")
      expect(Object.keys(missing.json).sort()).toEqual(["errorCode", "errorDetails", "key"])

      // Off, a json flag has no json value: the provider must fall back to the code default.
      const off = { enabled: false, strategies: [{ name: "default" }] }
      expect((yield* request(base, "PUT", "/api/v1/flags/json.theme/environments/production", off, headers)).status).toBe(200)
      const mismatch = yield* ofrep(base, headers, "json.theme", { context: { targetingKey: "u-1" } })
      expect(mismatch.status).toBe(400)
      expect(mismatch.json).toMatchObject({ key: "json.theme", errorCode: "TYPE_MISMATCH" })

      const unknown = yield* ofrep(base, headers, "no.such-flag", { context: {} })
      expect(unknown.status).toBe(404)
      expect(unknown.json).toMatchObject({ key: "no.such-flag", errorCode: "FLAG_NOT_FOUND" })
      expect((yield* ofrep(base, headers, "Not%20A%20Key", {})).json.errorCode).toBe("FLAG_NOT_FOUND")
      yield* request(base, "POST", "/api/v1/flags/bool.on/archive", undefined, headers)
      expect((yield* ofrep(base, headers, "bool.on", {})).status).toBe(404)

      const badContext = yield* ofrep(base, headers, "sticky.rollout", { context: "user-1" })
      expect(badContext.json).toMatchObject({ key: "sticky.rollout", errorCode: "INVALID_CONTEXT" })
      const badKey = yield* ofrep(base, headers, "sticky.rollout", { context: { targetingKey: 42 } })
      expect(badKey.json).toMatchObject({ errorCode: "INVALID_CONTEXT" })
      const notJson = yield* ofrep(base, headers, "sticky.rollout", "{context:")
      expect(notJson.status).toBe(400)
      expect(notJson.json).toMatchObject({ key: "sticky.rollout", errorCode: "PARSE_ERROR" })
    })
  )

  it.scopedLive("OFREP bulk evaluation: every live flag, an ETag, and 304 for If-None-Match until a flag changes", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const { headers } = yield* createTenant(base)
      yield* request(base, "POST", "/api/v1/flags", { key: "b.flag", type: "release", environments: production([{ name: "default" }]) }, headers)
      yield* request(base, "POST", "/api/v1/flags", { key: "a.json", type: "experiment", environments: production([{ name: "default" }]), variants: jsonVariants }, headers)
      yield* request(base, "POST", "/api/v1/flags", {
        key: "c.sticky",
        type: "release",
        environments: production([{ name: "flexibleRollout", parameters: { rollout: 100, stickiness: "accountId" } }])
      }, headers)
      const body = { context: { targetingKey: "user-7" } }
      const first = yield* ofrep(base, headers, undefined, body)
      expect(first.status).toBe(200)
      expect(first.json.flags.map((f: { key: string }) => f.key)).toEqual(["a.json", "b.flag", "c.sticky"])
      expect(first.json.flags[1]).toEqual({ key: "b.flag", value: true, reason: "STATIC", metadata: { flagType: "release", environment: "production" } })
      expect(first.json.flags[2]).toMatchObject({ key: "c.sticky", errorCode: "TARGETING_KEY_MISSING" })
      const etag = first.headers.get("etag")
      expect(etag).toMatch(/^".+"$/)

      const same = yield* ofrep(base, headers, undefined, body, { "if-none-match": etag! })
      expect(same.status).toBe(304)
      expect(same.text).toBe("")
      expect((yield* ofrep(base, headers, undefined, body, { "if-none-match": `"other", W/${etag}` })).status).toBe(304)
      expect((yield* ofrep(base, headers, undefined, { context: { targetingKey: "user-7", accountId: "a-1" } }, { "if-none-match": etag! })).status).toBe(200)

      yield* request(base, "PATCH", "/api/v1/flags/b.flag", { enabled: false }, headers)
      const changed = yield* ofrep(base, headers, undefined, body, { "if-none-match": etag! })
      expect(changed.status).toBe(200)
      expect(changed.headers.get("etag")).not.toBe(etag)
      expect(changed.json.flags[1]).toMatchObject({ key: "b.flag", value: false, reason: "DISABLED" })
      expect((yield* ofrep(base, headers, undefined, { context: [] })).json).toMatchObject({ errorCode: "INVALID_CONTEXT" })
    })
  )

  it.scopedLive("evaluation needs an organisation's credential with flags:evaluate or flags:read", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const evaluator = yield* createTenant(base, { permissions: ["flags:evaluate"] })
      const unrelated = yield* createTenant(base, { permissions: ["identity:read"] })
      const anonymous = yield* Effect.promise(() => fetch(`${base}/ofrep/v1/evaluate/flags/x`, { method: "POST", body: "{}" }))
      expect(anonymous.status).toBe(401)
      expect((yield* ofrep(base, unrelated.headers, "x", {})).status).toBe(403)
      expect((yield* ofrep(base, { "x-api-key": ADMIN_KEY }, "x", {})).status).toBe(403)
      expect((yield* ofrep(base, evaluator.headers, "x", {})).status).toBe(404)
      expect((yield* request(base, "GET", "/api/v1/flags", undefined, evaluator.headers)).status).toBe(403)
    })
  )

  it.scopedLive("admin writes answer 400 naming the field and the problem the Domain Schemas found", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const { headers } = yield* createTenant(base)
      const create = (flag: unknown) => request(base, "POST", "/api/v1/flags", flag, headers)
      const cases: Array<[unknown, string, string]> = [
        [
          { key: "w", type: "experiment", variants: [{ name: "a", weight: 500 }, { name: "b", weight: 400 }] },
          "variants",
          "variant weights add up to 900, not 1000"
        ],
        [
          { key: "o", type: "release", environments: production([{ name: "default", constraints: [{ contextName: "c", operator: "FOO", values: ["x"] }] }]) },
          "environments.production.strategies[0].constraints[0].operator",
          'unknown operator "FOO"'
        ],
        [
          { key: "r", type: "release", environments: production([{ name: "flexibleRollout", parameters: { rollout: 150, stickiness: "userId" } }]) },
          "environments.production.strategies[0].parameters.rollout",
          "between 0 and 100"
        ],
        [
          { key: "n", type: "release", environments: production([{ name: "default", constraints: [{ contextName: "v", operator: "NUM_GT", value: "many" }] }]) },
          "environments.production.strategies[0].constraints[0]",
          'NUM_GT value "many" is not a number'
        ],
        [{ key: "Bad Key", type: "release" }, "key", "must be 1-100 characters"],
        [{ key: "export", type: "release" }, "key", "reserved"],
        [{ key: "t", type: "forever" }, "type", 'Expected "release" | "experiment" | "operational" | "kill-switch" | "permission", actual "forever"'],
        [{ key: "e", type: "release", environments: { staging: { enabled: true, strategies: [] } } }, "environments.staging", 'no environment "staging"']
      ]
      for (const [flag, field, problem] of cases) {
        const response = yield* create(flag)
        expect(response.status, JSON.stringify(flag)).toBe(400)
        expect(response.json).toMatchObject({ _tag: "BadRequest", field })
        expect(response.json.message).toContain(problem)
        expect(response.json.message).not.toContain("Expected undefined")
      }
      const notJson = yield* create("{")
      expect(notJson.status).toBe(400)
      expect(notJson.json._tag).toBe("BadRequest")
      expect((yield* create({ key: "dup", type: "release" })).status).toBe(201)
      expect((yield* create({ key: "dup", type: "release" })).status).toBe(409)
      const strategy = yield* request(base, "PUT", "/api/v1/flags/dup/environments/production", { enabled: true, strategies: [{ name: "gradual" }] }, headers)
      expect(strategy.status).toBe(400)
      expect(strategy.json.field).toBe("strategies[0].name")
    })
  )

  it.scopedLive("the audit trail names the API key that changed the flag, with the fields before and after", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const tenant = yield* createTenant(base)
      yield* request(base, "POST", "/api/v1/flags", { key: "audited", type: "release" }, tenant.headers)
      yield* request(base, "PATCH", "/api/v1/flags/audited", { description: "why it exists" }, tenant.headers)
      const trail = yield* request(base, "GET", "/api/v1/flags/audited/audit", undefined, tenant.headers)
      expect(trail.status).toBe(200)
      expect(trail.json.items.map((e: { action: string }) => e.action)).toEqual(["flags.update", "flags.create"])
      expect(trail.json.items[0]).toMatchObject({ actor: { kind: "api_key" }, before: { description: "" }, after: { description: "why it exists" } })
      expect(trail.json.items[0].requestId).toEqual(expect.any(String))
    })
  )

  it.scopedLive("export from one organisation imports into another, all or nothing", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const from = yield* createTenant(base)
      const to = yield* createTenant(base)
      yield* request(base, "POST", "/api/v1/flags", { key: "one", type: "release", environments: production([{ name: "default" }]) }, from.headers)
      yield* request(base, "POST", "/api/v1/flags", { key: "two", type: "experiment", variants: jsonVariants }, from.headers)
      const exported = yield* request(base, "GET", "/api/v1/flags/export", undefined, from.headers)
      expect(exported.status).toBe(200)
      const bad = { ...exported.json, flags: [...exported.json.flags, { key: "three", type: "release", variants: [{ name: "x", weight: 1 }] }] }
      const refused = yield* request(base, "POST", "/api/v1/flags/import", bad, to.headers)
      expect(refused.status).toBe(400)
      expect(refused.json.field).toBe("flags[2].variants")
      expect((yield* request(base, "GET", "/api/v1/flags", undefined, to.headers)).json.items).toEqual([])
      const imported = yield* request(base, "POST", "/api/v1/flags/import", exported.json, to.headers)
      expect(imported.json).toEqual({ created: ["one", "two"], updated: [], unchanged: [] })
      const again = yield* request(base, "GET", "/api/v1/flags/export", undefined, to.headers)
      expect(again.json.flags).toEqual(exported.json.flags)
    })
  )

  it.scopedLive("requireFlag flips another plugin's route between 200 and 503 without a restart", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const { headers } = yield* createTenant(base)
      const checkout = request(base, "GET", "/api/v1/demo/checkout", undefined, headers)
      // A kill switch nobody defined leaves the route on.
      expect((yield* checkout).status).toBe(200)
      yield* request(base, "POST", "/api/v1/flags", { key: "demo.kill", type: "kill-switch", environments: production([{ name: "default" }]) }, headers)
      expect((yield* checkout).status).toBe(200)
      yield* request(base, "PATCH", "/api/v1/flags/demo.kill", { enabled: false }, headers)
      const killed = yield* checkout
      expect(killed.status).toBe(503)
      expect(killed.json.message).toContain("demo.kill")
      yield* request(base, "PATCH", "/api/v1/flags/demo.kill", { enabled: true }, headers)
      expect((yield* checkout).json).toEqual({ ok: true })
    })
  )

  it.scopedLive("organisations are isolated: one cannot read, evaluate or change another's flag of the same key", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const [a, b, c] = yield* Effect.all([createTenant(base), createTenant(base), createTenant(base)])
      yield* request(base, "POST", "/api/v1/flags", { key: "same.key", type: "release", description: "A", environments: production([{ name: "default" }]) }, a.headers)
      yield* request(base, "POST", "/api/v1/flags", { key: "same.key", type: "release", description: "B" }, b.headers)
      yield* request(base, "PATCH", "/api/v1/flags/same.key", { description: "B2" }, b.headers)
      expect((yield* request(base, "GET", "/api/v1/flags/same.key", undefined, a.headers)).json.description).toBe("A")
      expect((yield* ofrep(base, a.headers, "same.key", {})).json.value).toBe(true)
      expect((yield* ofrep(base, b.headers, "same.key", {})).json.value).toBe(false)
      expect((yield* request(base, "GET", "/api/v1/flags/same.key", undefined, c.headers)).status).toBe(404)
      expect((yield* request(base, "PATCH", "/api/v1/flags/same.key", { enabled: false }, c.headers)).status).toBe(404)
      expect((yield* request(base, "GET", "/api/v1/flags/same.key/audit", undefined, c.headers)).status).toBe(404)
      expect((yield* ofrep(base, c.headers, "same.key", {})).status).toBe(404)
      expect((yield* ofrep(base, c.headers, undefined, {})).json).toEqual({ flags: [] })
      expect((yield* request(base, "GET", "/api/v1/flags", undefined, { "x-api-key": ADMIN_KEY })).status).toBe(403)
    })
  )

  it.scopedLive("the OpenAPI document is valid and documents OFREP's paths and every route's permission", () =>
    Effect.gen(function* () {
      const { base } = yield* start()
      const spec = (yield* request(base, "GET", "/openapi.json")).json
      yield* Effect.promise(() => SwaggerParser.validate(structuredClone(spec)))
      expect(spec.paths["/ofrep/v1/evaluate/flags/{key}"].post["x-required-permission"]).toBe("flags:evaluate")
      expect(spec.paths["/ofrep/v1/evaluate/flags"].post.responses["304"]).toBeDefined()
      const flagRoutes = Object.entries(spec.paths).filter(([path]) => path.startsWith("/api/v1/flags"))
      expect(flagRoutes.length).toBeGreaterThanOrEqual(8)
      for (const [path, item] of flagRoutes) {
        for (const operation of Object.values(item as Record<string, { "x-required-permission"?: string }>)) {
          expect(["flags:read", "flags:admin"], path).toContain(operation["x-required-permission"])
        }
      }
    })
  )

  it.scopedLive("a change made through instance A is evaluated on instance B within a second (one database, one Redis)", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const a = yield* start({ db, config: withRedis() })
      const b = yield* start({ db, config: withRedis() })
      const { headers } = yield* createTenant(a.base)
      const flag = { key: "two.instances", type: "release", environments: production([{ name: "default" }]) }
      expect((yield* request(a.base, "POST", "/api/v1/flags", flag, headers)).status).toBe(201)
      expect((yield* ofrep(b.base, headers, "two.instances", {})).json.value).toBe(true)
      yield* request(a.base, "PATCH", "/api/v1/flags/two.instances", { enabled: false }, headers)
      const seen = yield* waitFor(
        "instance B to evaluate the change",
        Effect.map(ofrep(b.base, headers, "two.instances", {}), (r) => (r.json.value === false ? r.json : undefined)),
        1_000,
        10
      )
      expect(seen.reason).toBe("DISABLED")
    })
  )

  it.scopedLive("the ops mass-retry route has a per-organisation kill switch, and a tenant sees only its own dead letters", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp({
        http: true,
        plugins: [identityPlugin, ops.make({ retentionDays: 30, pruneSchedule: "17 3 * * *" })]
      })
      const [a, b] = yield* Effect.all([createTenant(base), createTenant(base)])
      for (const [jobId, org] of [[1, a.orgId], [2, b.orgId], [3, null]] as const) {
        yield* sql`insert into core.dead_letters (job_id, task_identifier, payload, org_id, reason, attempts, max_attempts, last_error, job_created_at)
                   values (${jobId}, 'ops.prune', '{"data": {}}', ${org}, 'exhausted', 1, 1, 'boom', now())`
      }
      const listed = yield* request(base, "GET", "/api/v1/ops/dead-letters", undefined, a.headers)
      expect(listed.json.items.map((d: { jobId: string }) => d.jobId)).toEqual(["1"])
      expect((yield* request(base, "GET", "/api/v1/ops/dead-letters", undefined)).json.items).toHaveLength(3)

      yield* request(base, "POST", "/api/v1/flags", { key: "ops.mass-retry", type: "kill-switch", enabled: false, environments: production([{ name: "default" }]) }, a.headers)
      const killed = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { filter: {} }, a.headers)
      expect(killed.status).toBe(503)
      expect(killed.json).toMatchObject({ _tag: "ServiceUnavailable", flag: "ops.mass-retry" })
      // Org B has no such switch: its retry runs, and touches only its own dead letter.
      const retriedB = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { filter: {} }, b.headers)
      expect(retriedB.json).toEqual({ count: 1 })
      yield* request(base, "PATCH", "/api/v1/flags/ops.mass-retry", { enabled: true }, a.headers)
      const retriedA = yield* request(base, "POST", "/api/v1/ops/dead-letters/retry", { filter: {} }, a.headers)
      expect(retriedA.json).toEqual({ count: 1 })
      const left = yield* sql<{ job_id: string }>`select job_id::text from core.dead_letters`
      expect(left.map((r) => r.job_id)).toEqual(["3"])
    })
  )
})
