import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { FeatureGate } from "../../../core/FeatureGate.ts"
import { inTenant } from "../../../core/Tenancy.ts"
import { FlagsAdmin } from "../../../plugins/flags/Admin.ts"
import { FlagsDocument } from "../../../plugins/flags/Model.ts"
import { normalizedHash } from "../../../plugins/flags/Murmur.ts"
import { withRedis } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"
import { waitFor } from "../../support/wait.ts"
import { asOrg, jsonFlag, newFlag, onInProduction, rolloutFlag, staleTask, startApp } from "./support.ts"

const listParams = { archived: false, limit: 100 } as const

/** A user id whose rollout bucket for `key` is inside (or outside) `rollout` percent. */
const userFor = (key: string, rollout: number, inside: boolean) => {
  for (let i = 0; ; i++) {
    if (normalizedHash(`user-${i}`, key) <= rollout === inside) return `user-${i}`
  }
}

describe("flags service", () => {
  it.scopedLive("FeatureGate evaluates the current tenant's flags; unknown flags and no tenant are off", () =>
    Effect.gen(function* () {
      const { context } = yield* startApp()
      const org = randomUUID()
      const run = <A, E>(effect: Effect.Effect<A, E, FeatureGate | FlagsAdmin>) => Effect.provide(asOrg(org, effect), context)
      const gate = yield* Effect.provide(FeatureGate, context)
      expect(yield* Effect.provide(gate.isEnabled("checkout.rollout"), context)).toBe(false)
      expect(yield* run(gate.isEnabled("checkout.rollout"))).toBe(false)
      expect(Option.isNone(yield* run(gate.variant("checkout.rollout")))).toBe(true)

      yield* run(Effect.flatMap(FlagsAdmin, (admin) => admin.create(rolloutFlag("checkout.rollout"))))
      yield* run(Effect.flatMap(FlagsAdmin, (admin) => admin.create(jsonFlag("checkout.theme"))))
      const targeted = { country: "NL", appVersion: "2.1.0" }
      expect(yield* run(gate.isEnabled("checkout.rollout", { ...targeted, userId: userFor("checkout.rollout", 50, true) }))).toBe(true)
      expect(yield* run(gate.isEnabled("checkout.rollout", { ...targeted, userId: userFor("checkout.rollout", 50, false) }))).toBe(false)
      expect(yield* run(gate.isEnabled("checkout.rollout", { ...targeted, country: "DE", userId: userFor("checkout.rollout", 50, true) }))).toBe(false)
      expect(yield* run(gate.isEnabled("checkout.rollout", { ...targeted, environment: "development", userId: userFor("checkout.rollout", 50, true) }))).toBe(false)
      expect(Option.isNone(yield* run(gate.variant("checkout.rollout", { ...targeted, userId: "u" })))).toBe(true)
      const variant = yield* run(gate.variant("checkout.theme", { userId: "u-1" }))
      expect(Option.getOrThrow(variant).payload?.type).toBe("json")
      expect(["blue", "green"]).toContain(Option.getOrThrow(variant).name)
      expect(yield* run(gate.isEnabled("not a key!"))).toBe(false)
    })
  )

  it.scopedLive("the same key in two organisations is two flags; one cannot read, change or evaluate another's", () =>
    Effect.gen(function* () {
      const { context, sql } = yield* startApp()
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()]
      const as = <A, E>(org: string, f: (admin: FlagsAdmin, gate: FeatureGate["Type"]) => Effect.Effect<A, E>) =>
        Effect.provide(asOrg(org, Effect.flatMap(Effect.all([FlagsAdmin, FeatureGate]), ([admin, gate]) => f(admin, gate))), context)
      yield* as(a, (admin) => admin.create(onInProduction("shared.key", { description: "A's" })))
      yield* as(b, (admin) => admin.create(onInProduction("shared.key", { description: "B's", enabled: false })))
      expect(yield* as(a, (_, gate) => gate.isEnabled("shared.key"))).toBe(true)
      expect(yield* as(b, (_, gate) => gate.isEnabled("shared.key"))).toBe(false)
      expect(yield* as(c, (_, gate) => gate.isEnabled("shared.key"))).toBe(false)

      yield* as(b, (admin) => admin.update("shared.key", { description: "B changed" }))
      expect((yield* as(a, (admin) => admin.get("shared.key"))).description).toBe("A's")
      expect((yield* as(a, (admin) => admin.list(listParams))).items.map((f) => f.description)).toEqual(["A's"])
      expect((yield* Effect.flip(as(c, (admin) => admin.get("shared.key"))))._tag).toBe("NotFound")
      expect((yield* Effect.flip(as(c, (admin) => admin.update("shared.key", { enabled: false }))))._tag).toBe("NotFound")
      expect(yield* as(a, (_, gate) => gate.isEnabled("shared.key"))).toBe(true)
      // Row-level security, not only the queries' own filters, keeps organisations apart.
      const visible = yield* inTenant(c, sql<{ n: number }>`select count(*)::int as n from flags.flags`).pipe(Effect.provide(context))
      expect(visible[0]!.n).toBe(0)
      const all = yield* sql<{ n: number }>`select count(*)::int as n from flags.flags`
      expect(all[0]!.n).toBe(2)
    })
  )

  it.scopedLive("every change is audited with its actor and the changed fields before and after", () =>
    Effect.gen(function* () {
      const { context, sql } = yield* startApp()
      const org = randomUUID()
      const run = <A, E>(f: (admin: FlagsAdmin) => Effect.Effect<A, E>) => Effect.provide(asOrg(org, Effect.flatMap(FlagsAdmin, f)), context)
      yield* run((admin) => admin.create(onInProduction("audited.flag")))
      yield* run((admin) => admin.update("audited.flag", { description: "now described", tags: ["team:checkout"] }))
      yield* run((admin) => admin.update("audited.flag", { description: "now described" }))
      yield* run((admin) => admin.setEnvironment("audited.flag", "development", { enabled: true, strategies: [] }))
      yield* run((admin) => admin.setArchived("audited.flag", true))
      yield* run((admin) => admin.setArchived("audited.flag", true))
      yield* run((admin) => admin.remove("audited.flag"))

      const trail = yield* run((admin) => admin.auditTrail("audited.flag", { limit: 50 }))
      expect(trail.items.map((e) => e.action)).toEqual(["flags.delete", "flags.archive", "flags.update", "flags.update", "flags.create"])
      const [deleted, archived, environment, described, created] = trail.items
      expect(created!.before).toBeNull()
      expect(created!.after).toMatchObject({ key: "audited.flag", type: "release", enabled: true, archived: false })
      expect(described!.before).toEqual({ description: "", tags: [] })
      expect(described!.after).toEqual({ description: "now described", tags: ["team:checkout"] })
      expect(environment!.before).toEqual({ environments: { development: null } })
      expect(environment!.after).toEqual({ environments: { development: { enabled: true, strategies: [] } } })
      expect(archived!.before).toEqual({ archived: false })
      expect(archived!.after).toEqual({ archived: true })
      expect(deleted!.after).toBeNull()
      expect(trail.items.every((e) => e.actor.kind === "system")).toBe(true)

      const page = yield* run((admin) => admin.auditTrail("audited.flag", { limit: 2 }))
      const next = yield* run((admin) => admin.auditTrail("audited.flag", { limit: 2, cursor: Number(page.nextCursor) }))
      expect([...page.items, ...next.items].map((e) => e.id)).toEqual(trail.items.slice(0, 4).map((e) => e.id))
      const rows = yield* sql<{ org_id: string; details: { before: unknown; after: unknown } }>`
        select org_id::text, details from core.audit_log where action = 'flags.archive'`
      expect(rows).toEqual([{ org_id: org, details: { before: { archived: false }, after: { archived: true } } }])
      expect((yield* Effect.flip(run((admin) => admin.auditTrail("never.existed", { limit: 50 }))))._tag).toBe("NotFound")
    })
  )

  it.scopedLive("definitions the Schemas cannot judge are refused naming the field: environments, payload types", () =>
    Effect.gen(function* () {
      const { context } = yield* startApp()
      const run = <A, E>(f: (admin: FlagsAdmin) => Effect.Effect<A, E>) =>
        Effect.provide(asOrg(randomUUID(), Effect.flatMap(FlagsAdmin, f)), context).pipe(Effect.flip)
      const staging = yield* run((admin) =>
        admin.create(newFlag({ key: "x", type: "release", environments: { staging: { enabled: true, strategies: [] } } }))
      )
      expect(staging).toMatchObject({ _tag: "BadRequest", field: "environments.staging" })
      expect(staging.message).toContain('no environment "staging"')
      const mixed = yield* run((admin) =>
        admin.create(
          newFlag({
            key: "y",
            type: "experiment",
            variants: [
              { name: "a", weight: 500, payload: { type: "string", value: "x" } },
              { name: "b", weight: 500, payload: { type: "json", value: "{}" } }
            ]
          })
        )
      )
      expect(mixed).toMatchObject({ _tag: "BadRequest", field: "variants[1]" })
      expect(mixed.message).toContain('variant "b" has a json payload but variant "a" has a string payload')
    })
  )

  it.scopedLive("environments: the defaults at first, added ones take flags, removal refused while in use or for the last", () =>
    Effect.gen(function* () {
      const { context } = yield* startApp()
      const org = randomUUID()
      const run = <A, E>(f: (admin: FlagsAdmin) => Effect.Effect<A, E>) => Effect.provide(asOrg(org, Effect.flatMap(FlagsAdmin, f)), context)
      const names = Effect.map(run((admin) => admin.environments), (list) => list.map((e) => e.name))
      expect(yield* names).toEqual(["development", "production"])
      yield* run((admin) => admin.addEnvironment("staging"))
      yield* run((admin) => admin.create(newFlag({ key: "staged", type: "release", environments: { staging: { enabled: true, strategies: [] } } })))
      const inUse = yield* Effect.flip(run((admin) => admin.removeEnvironment("staging")))
      expect(inUse).toMatchObject({ _tag: "Conflict" })
      expect(inUse.message).toContain("staged")
      expect(yield* names).toEqual(["development", "production", "staging"])
      const unstaged = yield* run((admin) => admin.update("staged", { environments: { staging: null } }))
      expect(unstaged.environments).toEqual({})
      yield* run((admin) => admin.removeEnvironment("staging"))
      yield* run((admin) => admin.removeEnvironment("development"))
      expect((yield* Effect.flip(run((admin) => admin.removeEnvironment("production"))))._tag).toBe("Conflict")
      expect((yield* Effect.flip(run((admin) => admin.removeEnvironment("staging"))))._tag).toBe("NotFound")
      expect(yield* names).toEqual(["production"])
    })
  )

  it.scopedLive("export and import round-trip between organisations, report what changed, and are all or nothing", () =>
    Effect.gen(function* () {
      const { context } = yield* startApp()
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()]
      const as = <A, E>(org: string, f: (admin: FlagsAdmin) => Effect.Effect<A, E>) => Effect.provide(asOrg(org, Effect.flatMap(FlagsAdmin, f)), context)
      yield* as(a, (admin) => admin.create(rolloutFlag("one.rollout")))
      yield* as(a, (admin) => admin.create(jsonFlag("two.json")))
      yield* as(a, (admin) => admin.create(onInProduction("three.archived", { tags: ["old"] })))
      yield* as(a, (admin) => admin.setArchived("three.archived", true))
      // Through JSON, as over HTTP.
      const exported = Schema.decodeUnknownSync(FlagsDocument)(JSON.parse(JSON.stringify(yield* as(a, (admin) => admin.exportAll(true)))))
      expect(exported.flags.map((f) => f.key)).toEqual(["one.rollout", "three.archived", "two.json"])

      expect(yield* as(b, (admin) => admin.importAll(exported))).toEqual({
        created: ["one.rollout", "three.archived", "two.json"],
        updated: [],
        unchanged: []
      })
      const again = yield* as(b, (admin) => admin.exportAll(true))
      expect(again.flags).toEqual(exported.flags)
      expect(yield* as(b, (admin) => admin.importAll(exported))).toEqual({
        created: [],
        updated: [],
        unchanged: ["one.rollout", "three.archived", "two.json"]
      })
      const changed = { ...exported, flags: exported.flags.map((f) => (f.key === "three.archived" ? { ...f, archived: false } : f)) }
      expect(yield* as(b, (admin) => admin.importAll(changed))).toEqual({
        created: [],
        updated: ["three.archived"],
        unchanged: ["one.rollout", "two.json"]
      })
      const restored = yield* as(b, (admin) => admin.auditTrail("three.archived", { limit: 10 }))
      expect(restored.items.map((e) => e.action)).toEqual(["flags.update", "flags.create"])
      expect(restored.items[0]!.after).toEqual({ archived: false })

      const bad = Schema.decodeUnknownSync(FlagsDocument)({
        version: 1,
        flags: [
          { key: "good.one", type: "release" },
          { key: "bad.one", type: "release", environments: { staging: { enabled: true, strategies: [] } } }
        ]
      })
      const refused = yield* Effect.flip(as(c, (admin) => admin.importAll(bad)))
      expect(refused).toMatchObject({ _tag: "BadRequest", field: "flags[1].environments.staging" })
      const twice = yield* Effect.flip(
        as(c, (admin) => admin.importAll({ version: 1, flags: [bad.flags[0]!, bad.flags[0]!] }))
      )
      expect(twice).toMatchObject({ _tag: "BadRequest", field: "flags[1].key" })
      expect((yield* as(c, (admin) => admin.exportAll(true))).flags).toEqual([])
    })
  )

  it.scopedLive("flags.stale reports each flag past its type's lifetime once, in its organisation", () =>
    Effect.gen(function* () {
      const { context, sql } = yield* startApp()
      const [a, b] = [randomUUID(), randomUUID()]
      const create = (org: string, key: string, type: string, ageDays: number, archived = false) =>
        Effect.gen(function* () {
          yield* Effect.provide(asOrg(org, Effect.flatMap(FlagsAdmin, (admin) => admin.create(newFlag({ key, type })))), context)
          if (archived) yield* Effect.provide(asOrg(org, Effect.flatMap(FlagsAdmin, (admin) => admin.setArchived(key, true))), context)
          yield* sql`update flags.flags set created_at = now() - make_interval(days => ${ageDays}) where org_id = ${org} and key = ${key}`
        })
      yield* create(a, "release.old", "release", 41)
      yield* create(a, "release.young", "release", 39)
      yield* create(a, "ops.old", "operational", 8)
      yield* create(a, "kill.ancient", "kill-switch", 400)
      yield* create(a, "release.archived", "release", 100, true)
      yield* create(b, "experiment.old", "experiment", 50)

      yield* staleTask.handler({}).pipe(Effect.provide(context))
      yield* staleTask.handler({}).pipe(Effect.provide(context))
      const events = yield* sql<{ org_id: string; payload: { key: string; type: string; ageDays: number; lifetimeDays: number } }>`
        select org_id::text, payload from core.outbox_events where type = 'flags.stale' order by payload ->> 'key'`
      expect(events.map((e) => [e.org_id, e.payload.key, e.payload.type, e.payload.ageDays, e.payload.lifetimeDays])).toEqual([
        [b, "experiment.old", "experiment", 50, 40],
        [a, "ops.old", "operational", 8, 7],
        [a, "release.old", "release", 41, 40]
      ])
      const flag = yield* Effect.provide(asOrg(a, Effect.flatMap(FlagsAdmin, (admin) => admin.get("release.old"))), context)
      expect(flag.stale).toBe(true)
    })
  )

  it.scopedLive("a change made through one instance is what another evaluates within a second (shared Redis cache)", () =>
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const a = yield* startApp({ db, config: withRedis() })
      const b = yield* startApp({ db, config: withRedis() })
      const org = randomUUID()
      const on = (app: typeof a) => Effect.provide(asOrg(org, Effect.flatMap(FeatureGate, (gate) => gate.isEnabled("shared.cache"))), app.context)
      const admin = <A, E>(f: (admin: FlagsAdmin) => Effect.Effect<A, E>) => Effect.provide(asOrg(org, Effect.flatMap(FlagsAdmin, f)), a.context)
      expect(yield* on(b)).toBe(false)
      yield* admin((s) => s.create(onInProduction("shared.cache")))
      const started = Date.now()
      yield* waitFor("instance B to see the new flag", Effect.map(on(b), (enabled) => (enabled ? true : undefined)), 1_000, 10)
      yield* admin((s) => s.update("shared.cache", { enabled: false }))
      yield* waitFor("instance B to see the flag switched off", Effect.map(on(b), (enabled) => (enabled ? undefined : true)), 1_000, 10)
      expect(Date.now() - started).toBeLessThan(2_000)
      // B keeps answering from the cache until the next change: the definition is not reloaded per call.
      yield* a.sql`update flags.flags set enabled = true where key = 'shared.cache'`
      expect(yield* on(b)).toBe(false)
    })
  )
})
