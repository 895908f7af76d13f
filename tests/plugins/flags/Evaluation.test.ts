import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { FlagDefinition, type EvaluationContext } from "../../../plugins/flags/Domain.ts"
import { evaluate } from "../../../plugins/flags/Evaluation.ts"
import { murmur3, normalizedHash } from "../../../plugins/flags/Murmur.ts"

// A second MurmurHash3 x86_32, written differently on purpose: BigInt arithmetic over the
// bytes Node's own UTF-8 encoder produces, so a shared mistake is unlikely.
const MASK = 0xffffffffn
const mul32 = (a: bigint, b: bigint) => (a * b) & MASK
const rotl32 = (x: bigint, r: bigint) => ((x << r) | (x >> (32n - r))) & MASK
const referenceMurmur = (text: string, seed = 0): number => {
  const bytes = Buffer.from(text, "utf8")
  let h = BigInt(seed >>> 0)
  const blocks = Math.floor(bytes.length / 4)
  for (let b = 0; b < blocks; b++) {
    let k = BigInt(bytes.readUInt32LE(b * 4))
    k = mul32(rotl32(mul32(k, 0xcc9e2d51n), 15n), 0x1b873593n)
    h = rotl32(h ^ k, 13n)
    h = (mul32(h, 5n) + 0xe6546b64n) & MASK
  }
  const rest = bytes.length % 4
  if (rest > 0) {
    let k = 0n
    for (let j = 0; j < rest; j++) k |= BigInt(bytes[blocks * 4 + j]!) << BigInt(8 * j)
    h ^= mul32(rotl32(mul32(k, 0xcc9e2d51n), 15n), 0x1b873593n)
  }
  h ^= BigInt(bytes.length)
  h ^= h >> 16n
  h = mul32(h, 0x85ebca6bn)
  h ^= h >> 13n
  h = mul32(h, 0xc2b2ae35n)
  h ^= h >> 16n
  return Number(h)
}
// Unleash's variant hash seed, restated here so a wrong constant in the engine fails a test.
const VARIANT_HASH_SEED = 86028157
const referenceBucket = (id: string, groupId: string, normalizer = 100, seed = 0) =>
  (referenceMurmur(`${groupId}:${id}`, seed) % normalizer) + 1

// Seeded so a failure reproduces.
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const randomText = (random: () => number): string => {
  const length = Math.floor(random() * 40)
  let out = ""
  for (let i = 0; i < length; i++) {
    const pick = random()
    const span = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1))
    if (pick < 0.4) out += String.fromCharCode(span(0x20, 0x7e))
    else if (pick < 0.55) out += String.fromCharCode(span(0x80, 0x7ff))
    else if (pick < 0.7) out += String.fromCharCode(span(0xe000, 0xffff))
    else if (pick < 0.75) out += String.fromCharCode(span(0x800, 0xd7ff))
    else if (pick < 0.9) out += String.fromCodePoint(span(0x10000, 0x10ffff))
    // Lone surrogates: both encoders must write U+FFFD.
    else out += String.fromCharCode(span(0xd800, 0xdfff))
  }
  return out
}

describe("murmur3", () => {
  it("matches published MurmurHash3 x86_32 vectors, as does the reference", () => {
    const vectors: Array<[string, number, number]> = [
      ["", 0, 0],
      ["", 1, 0x514e28b7],
      ["test", 0, 0xba6bd213],
      ["Hello, world!", 0, 0xc0363e43],
      ["The quick brown fox jumps over the lazy dog", 0, 0x2e4ff723]
    ]
    for (const [text, seed, expected] of vectors) {
      expect(referenceMurmur(text, seed), `reference ${JSON.stringify(text)} seed ${seed}`).toBe(expected)
      expect(murmur3(text, seed), `${JSON.stringify(text)} seed ${seed}`).toBe(expected)
    }
  })

  it("agrees with the reference on 1,000 random strings across UTF-8 widths and seeds", () => {
    const random = prng(20261122)
    for (let i = 0; i < 1000; i++) {
      const text = randomText(random)
      const seed = i % 3 === 0 ? 0 : i % 3 === 1 ? VARIANT_HASH_SEED : Math.floor(random() * 2 ** 32)
      expect(murmur3(text, seed), `${JSON.stringify(text)} seed ${seed}`).toBe(referenceMurmur(text, seed))
    }
  })

  it("buckets as Unleash's SDKs do", () => {
    // Published in Unleash's Node SDK tests as agreeing with its Java and Go SDKs.
    expect(normalizedHash("123", "gr1")).toBe(73)
    expect(normalizedHash("999", "groupX")).toBe(25)
    expect(referenceBucket("123", "gr1")).toBe(73)
    expect(referenceBucket("999", "groupX")).toBe(25)
    const pairs: Array<[string, string]> = [
      ["user-1", "checkout.new-flow"],
      ["42", "search.ranking"],
      ["sessão-ü", "i18n.flag"],
      ["", "empty-id"]
    ]
    for (const [id, groupId] of pairs) {
      expect(normalizedHash(id, groupId)).toBe(referenceBucket(id, groupId))
      expect(normalizedHash(id, groupId, 1000, VARIANT_HASH_SEED)).toBe(referenceBucket(id, groupId, 1000, VARIANT_HASH_SEED))
    }
  })
})

const decodeFlag = Schema.decodeUnknownSync(FlagDefinition)
const flag = (strategies: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}): FlagDefinition =>
  decodeFlag({
    key: "checkout.new-flow",
    type: "release",
    description: "",
    enabled: true,
    environments: { production: { enabled: true, strategies } },
    variants: [],
    archived: false,
    ...extra
  })

const withConstraint = (constraint: Record<string, unknown>) => flag([{ name: "default", constraints: [constraint] }])
const matches = (constraint: Record<string, unknown>, context: EvaluationContext) =>
  evaluate(withConstraint(constraint), "production", context).enabled

describe("constraints", () => {
  const cases: Array<[string, Record<string, unknown>, EvaluationContext, boolean]> = [
    ["IN hit", { contextName: "tenant", operator: "IN", values: ["a", "b"] }, { tenant: "b" }, true],
    ["IN miss", { contextName: "tenant", operator: "IN", values: ["a", "b"] }, { tenant: "c" }, false],
    ["IN is case-sensitive", { contextName: "tenant", operator: "IN", values: ["Acme"] }, { tenant: "ACME" }, false],
    ["IN caseInsensitive", { contextName: "tenant", operator: "IN", values: ["Acme"], caseInsensitive: true }, { tenant: "ACME" }, true],
    ["IN trims values", { contextName: "tenant", operator: "IN", values: [" a "] }, { tenant: "a" }, true],
    ["IN reads numbers", { contextName: "plan", operator: "IN", values: ["3"] }, { plan: 3 }, true],
    ["NOT_IN hit", { contextName: "tenant", operator: "NOT_IN", values: ["a"] }, { tenant: "b" }, true],
    ["NOT_IN miss", { contextName: "tenant", operator: "NOT_IN", values: ["a"] }, { tenant: "a" }, false],
    ["NOT_IN case-sensitive", { contextName: "tenant", operator: "NOT_IN", values: ["Acme"] }, { tenant: "acme" }, true],
    ["NOT_IN caseInsensitive", { contextName: "tenant", operator: "NOT_IN", values: ["Acme"], caseInsensitive: true }, { tenant: "acme" }, false],
    ["STR_STARTS_WITH hit", { contextName: "email", operator: "STR_STARTS_WITH", values: ["x", "admin@"] }, { email: "admin@acme.io" }, true],
    ["STR_STARTS_WITH miss", { contextName: "email", operator: "STR_STARTS_WITH", values: ["admin@"] }, { email: "me@admin.io" }, false],
    ["STR_STARTS_WITH case-sensitive", { contextName: "email", operator: "STR_STARTS_WITH", values: ["Admin@"] }, { email: "admin@acme.io" }, false],
    ["STR_STARTS_WITH caseInsensitive", { contextName: "email", operator: "STR_STARTS_WITH", values: ["Admin@"], caseInsensitive: true }, { email: "ADMIN@acme.io" }, true],
    ["STR_ENDS_WITH hit", { contextName: "email", operator: "STR_ENDS_WITH", values: ["@acme.io"] }, { email: "me@acme.io" }, true],
    ["STR_ENDS_WITH miss", { contextName: "email", operator: "STR_ENDS_WITH", values: ["@acme.io"] }, { email: "me@acme.io.evil" }, false],
    ["STR_ENDS_WITH case-sensitive", { contextName: "email", operator: "STR_ENDS_WITH", values: ["@ACME.io"] }, { email: "me@acme.io" }, false],
    ["STR_ENDS_WITH caseInsensitive", { contextName: "email", operator: "STR_ENDS_WITH", values: ["@ACME.io"], caseInsensitive: true }, { email: "me@acme.IO" }, true],
    ["STR_CONTAINS hit", { contextName: "agent", operator: "STR_CONTAINS", values: ["Firefox"] }, { agent: "Mozilla Firefox/130" }, true],
    ["STR_CONTAINS miss", { contextName: "agent", operator: "STR_CONTAINS", values: ["Firefox"] }, { agent: "Chrome/130" }, false],
    ["STR_CONTAINS case-sensitive", { contextName: "agent", operator: "STR_CONTAINS", values: ["firefox"] }, { agent: "Mozilla Firefox" }, false],
    ["STR_CONTAINS caseInsensitive", { contextName: "agent", operator: "STR_CONTAINS", values: ["firefox"], caseInsensitive: true }, { agent: "Mozilla FIREFOX" }, true],
    ["NUM_EQ hit", { contextName: "age", operator: "NUM_EQ", value: "5" }, { age: 5 }, true],
    ["NUM_EQ reads numeric strings", { contextName: "age", operator: "NUM_EQ", value: "5" }, { age: "5.0" }, true],
    ["NUM_EQ miss", { contextName: "age", operator: "NUM_EQ", value: "5" }, { age: 6 }, false],
    ["NUM_EQ non-numeric context", { contextName: "age", operator: "NUM_EQ", value: "5" }, { age: "five" }, false],
    ["NUM_GT hit", { contextName: "age", operator: "NUM_GT", value: "5" }, { age: 6 }, true],
    ["NUM_GT miss", { contextName: "age", operator: "NUM_GT", value: "5" }, { age: 5 }, false],
    ["NUM_GTE hit", { contextName: "age", operator: "NUM_GTE", value: "5" }, { age: 5 }, true],
    ["NUM_GTE miss", { contextName: "age", operator: "NUM_GTE", value: "5" }, { age: 4.9 }, false],
    ["NUM_LT hit", { contextName: "age", operator: "NUM_LT", value: "5" }, { age: -1 }, true],
    ["NUM_LT miss", { contextName: "age", operator: "NUM_LT", value: "5" }, { age: 5 }, false],
    ["NUM_LTE hit", { contextName: "age", operator: "NUM_LTE", value: "5" }, { age: "5" }, true],
    ["NUM_LTE miss", { contextName: "age", operator: "NUM_LTE", value: "5" }, { age: 5.01 }, false],
    ["NUM_ treats 0 as present", { contextName: "age", operator: "NUM_EQ", value: "0" }, { age: 0 }, true],
    ["DATE_AFTER hit", { contextName: "currentTime", operator: "DATE_AFTER", value: "2026-01-01T00:00:00Z" }, { currentTime: "2026-06-01T00:00:00Z" }, true],
    ["DATE_AFTER miss", { contextName: "currentTime", operator: "DATE_AFTER", value: "2026-01-01T00:00:00Z" }, { currentTime: "2025-12-31T23:59:59Z" }, false],
    ["DATE_AFTER honours offsets", { contextName: "currentTime", operator: "DATE_AFTER", value: "2026-01-01T00:00:00+03:00" }, { currentTime: "2025-12-31T21:30:00Z" }, true],
    ["DATE_AFTER defaults currentTime to now", { contextName: "currentTime", operator: "DATE_AFTER", value: "2000-01-01" }, {}, true],
    ["DATE_BEFORE hit", { contextName: "currentTime", operator: "DATE_BEFORE", value: "2026-01-01T00:00:00Z" }, { currentTime: "2025-12-31T23:59:59Z" }, true],
    ["DATE_BEFORE miss", { contextName: "currentTime", operator: "DATE_BEFORE", value: "2026-01-01T00:00:00Z" }, { currentTime: "2026-01-01T00:00:01Z" }, false],
    ["DATE_BEFORE defaults currentTime to now", { contextName: "currentTime", operator: "DATE_BEFORE", value: "2000-01-01" }, {}, false],
    ["DATE_ reads epoch milliseconds", { contextName: "signupAt", operator: "DATE_BEFORE", value: "2026-01-01" }, { signupAt: Date.UTC(2025, 0, 1) }, true],
    ["DATE_ unreadable context", { contextName: "signupAt", operator: "DATE_BEFORE", value: "2026-01-01" }, { signupAt: "yesterday" }, false],
    ["SEMVER_EQ hit", { contextName: "appVersion", operator: "SEMVER_EQ", value: "1.2.3" }, { appVersion: "1.2.3" }, true],
    ["SEMVER_EQ ignores build metadata", { contextName: "appVersion", operator: "SEMVER_EQ", value: "1.2.3" }, { appVersion: "v1.2.3+build.7" }, true],
    ["SEMVER_EQ miss", { contextName: "appVersion", operator: "SEMVER_EQ", value: "1.2.3" }, { appVersion: "1.2.4" }, false],
    ["SEMVER_GT compares numerically", { contextName: "appVersion", operator: "SEMVER_GT", value: "1.9.0" }, { appVersion: "1.10.0" }, true],
    ["SEMVER_GT miss", { contextName: "appVersion", operator: "SEMVER_GT", value: "1.2.3" }, { appVersion: "1.2.3-rc.1" }, false],
    ["SEMVER_LT hit", { contextName: "appVersion", operator: "SEMVER_LT", value: "2.0.0" }, { appVersion: "1.99.99" }, true],
    ["SEMVER_LT miss", { contextName: "appVersion", operator: "SEMVER_LT", value: "2.0.0" }, { appVersion: "2.0.0" }, false],
    ["SEMVER_ invalid context", { contextName: "appVersion", operator: "SEMVER_LT", value: "2.0.0" }, { appVersion: "1.2" }, false]
  ]

  it("every operator matches and misses as specified, and `inverted` flips each outcome", () => {
    for (const [name, constraint, context, expected] of cases) {
      expect(matches(constraint, context), name).toBe(expected)
      expect(matches({ ...constraint, inverted: true }, context), `${name}, inverted`).toBe(!expected)
    }
  })

  it("a missing field matches nothing but NOT_IN (and empty strings count as missing)", () => {
    const constraints: Array<Record<string, unknown>> = [
      { operator: "IN", values: ["a"] },
      { operator: "STR_STARTS_WITH", values: ["a"] },
      { operator: "STR_ENDS_WITH", values: ["a"] },
      { operator: "STR_CONTAINS", values: ["a"] },
      { operator: "NUM_EQ", value: "0" },
      { operator: "NUM_GT", value: "-1" },
      { operator: "NUM_GTE", value: "0" },
      { operator: "NUM_LT", value: "1" },
      { operator: "NUM_LTE", value: "0" },
      { operator: "DATE_AFTER", value: "2000-01-01" },
      { operator: "DATE_BEFORE", value: "2999-01-01" },
      { operator: "SEMVER_EQ", value: "0.0.0" },
      { operator: "SEMVER_GT", value: "0.0.0" },
      { operator: "SEMVER_LT", value: "999.0.0" }
    ]
    for (const c of constraints) {
      for (const context of [{}, { field: "" }] as Array<EvaluationContext>) {
        expect(matches({ contextName: "field", ...c }, context), `${c.operator} ${JSON.stringify(context)}`).toBe(false)
        expect(matches({ contextName: "field", ...c, inverted: true }, context), `${c.operator} inverted`).toBe(true)
      }
    }
    expect(matches({ contextName: "field", operator: "NOT_IN", values: ["a"] }, {})).toBe(true)
    expect(matches({ contextName: "field", operator: "NOT_IN", values: ["a"], inverted: true }, {})).toBe(false)
    // Inherited object members are not context fields.
    expect(matches({ contextName: "constructor", operator: "STR_CONTAINS", values: ["function"] }, {})).toBe(false)
  })

  it("orders pre-releases by SemVer 2.0 precedence", () => {
    const ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        const pair = `${ordered[i]} vs ${ordered[j]}`
        expect(matches({ contextName: "v", operator: "SEMVER_LT", value: ordered[j] }, { v: ordered[i]! }), `${pair} LT`).toBe(i < j)
        expect(matches({ contextName: "v", operator: "SEMVER_GT", value: ordered[j] }, { v: ordered[i]! }), `${pair} GT`).toBe(i > j)
        expect(matches({ contextName: "v", operator: "SEMVER_EQ", value: ordered[j] }, { v: ordered[i]! }), `${pair} EQ`).toBe(i === j)
      }
    }
  })

  it("ANDs constraints, and defaults `environment` to the environment evaluated", () => {
    const both = flag([
      {
        name: "default",
        constraints: [
          { contextName: "tenant", operator: "IN", values: ["acme"] },
          { contextName: "environment", operator: "IN", values: ["production"] }
        ]
      }
    ])
    expect(evaluate(both, "production", { tenant: "acme" })).toEqual({ enabled: true, reason: "TARGETING_MATCH" })
    expect(evaluate(both, "production", { tenant: "other" })).toEqual({ enabled: false, reason: "DEFAULT" })
    expect(evaluate(both, "production", { tenant: "acme", environment: "staging" })).toEqual({ enabled: false, reason: "DEFAULT" })
  })
})

describe("strategies", () => {
  const everyone = [{ name: "default" }]

  it("is DISABLED when the flag, its environment or the environment entry is off or missing", () => {
    expect(evaluate(flag(everyone), "production", {})).toEqual({ enabled: true, reason: "STATIC" })
    expect(evaluate(flag(everyone, { enabled: false }), "production", {})).toEqual({ enabled: false, reason: "DISABLED" })
    expect(evaluate(flag(everyone, { archived: true }), "production", {})).toEqual({ enabled: false, reason: "DISABLED" })
    const envOff = flag([], { environments: { production: { enabled: false, strategies: everyone } } })
    expect(evaluate(envOff, "production", {})).toEqual({ enabled: false, reason: "DISABLED" })
    expect(evaluate(flag(everyone), "staging", {})).toEqual({ enabled: false, reason: "DISABLED" })
    expect(evaluate(flag(everyone), "constructor", {})).toEqual({ enabled: false, reason: "DISABLED" })
  })

  it("is off with reason DEFAULT when the environment has no strategies or none matches", () => {
    expect(evaluate(flag([]), "production", {})).toEqual({ enabled: false, reason: "DEFAULT" })
    const listed = flag([{ name: "userWithId", parameters: { userIds: ["u1"] } }])
    expect(evaluate(listed, "production", { userId: "u2" })).toEqual({ enabled: false, reason: "DEFAULT" })
  })

  it("ORs strategies: the first that matches decides", () => {
    const f = flag([
      { name: "userWithId", parameters: { userIds: ["u1", "u2"] } },
      { name: "default", constraints: [{ contextName: "tenant", operator: "IN", values: ["acme"] }] },
      { name: "default" }
    ])
    expect(evaluate(f, "production", { userId: "u2" })).toEqual({ enabled: true, reason: "TARGETING_MATCH" })
    expect(evaluate(f, "production", { userId: "u9", tenant: "acme" })).toEqual({ enabled: true, reason: "TARGETING_MATCH" })
    expect(evaluate(f, "production", { userId: "u9" })).toEqual({ enabled: true, reason: "STATIC" })
  })

  it("userWithId reads userId, else the OpenFeature targetingKey", () => {
    const f = flag([{ name: "userWithId", parameters: { userIds: ["u1", " u2 "] } }])
    expect(evaluate(f, "production", { userId: "u1" }).enabled).toBe(true)
    expect(evaluate(f, "production", { userId: "u2" }).enabled).toBe(true)
    expect(evaluate(f, "production", { targetingKey: "u1" }).enabled).toBe(true)
    expect(evaluate(f, "production", { userId: "u9", targetingKey: "u1" }).enabled).toBe(false)
    expect(evaluate(f, "production", {})).toEqual({ enabled: false, reason: "DEFAULT" })
  })

  const rollout = (percent: number, stickiness = "default", groupId?: string) =>
    flag([{ name: "flexibleRollout", parameters: { rollout: percent, stickiness, ...(groupId === undefined ? {} : { groupId }) } }])

  it("flexibleRollout turns on 0%, 100% and about 50% of 10,000 users", () => {
    const count = (f: FlagDefinition) => {
      let on = 0
      for (let i = 0; i < 10_000; i++) if (evaluate(f, "production", { userId: `user-${i}` }).enabled) on++
      return on
    }
    expect(count(rollout(0))).toBe(0)
    expect(count(rollout(100))).toBe(10_000)
    const half = count(rollout(50))
    expect(half).toBeGreaterThanOrEqual(4_700)
    expect(half).toBeLessThanOrEqual(5_300)
    expect(evaluate(rollout(100), "production", { userId: "u" })).toEqual({ enabled: true, reason: "TARGETING_MATCH" })
  })

  it("flexibleRollout buckets like Unleash: hash of groupId:id, userId before sessionId", () => {
    const ids = Array.from({ length: 200 }, (_, i) => `id-${i}`)
    const inside = ids.find((id) => referenceBucket(id, "checkout.new-flow") <= 30)!
    const outside = ids.find((id) => referenceBucket(id, "checkout.new-flow") > 30)!
    const f = rollout(30)
    expect(evaluate(f, "production", { userId: inside })).toEqual({ enabled: true, reason: "SPLIT" })
    expect(evaluate(f, "production", { userId: outside })).toEqual({ enabled: false, reason: "DEFAULT" })
    expect(evaluate(f, "production", { sessionId: inside }).enabled).toBe(true)
    expect(evaluate(f, "production", { userId: outside, sessionId: inside }).enabled).toBe(false)
    expect(evaluate(f, "production", { targetingKey: inside, sessionId: outside }).enabled).toBe(true)

    const grouped = ids.find((id) => referenceBucket(id, "shared") <= 30 && referenceBucket(id, "checkout.new-flow") > 30)!
    expect(evaluate(rollout(30, "default", "shared"), "production", { userId: grouped }).enabled).toBe(true)
    expect(evaluate(rollout(30), "production", { userId: grouped }).enabled).toBe(false)

    const tenant = ids.find((id) => referenceBucket(id, "checkout.new-flow") <= 30)!
    expect(evaluate(rollout(30, "tenantId"), "production", { tenantId: tenant, userId: outside }).enabled).toBe(true)
  })

  it("is deterministic for a context, and random only without ids or with random stickiness", () => {
    const f = rollout(50)
    const contexts: Array<EvaluationContext> = [{ userId: "alice" }, { sessionId: "s-1" }, { userId: "bob", remoteAddress: "10.0.0.1" }]
    for (const context of contexts) {
      const first = evaluate(f, "production", context)
      for (let i = 0; i < 50; i++) expect(evaluate(f, "production", context)).toEqual(first)
    }
    const tally = (g: FlagDefinition, context: EvaluationContext) => {
      let on = 0
      for (let i = 0; i < 1000; i++) if (evaluate(g, "production", context).enabled) on++
      return on
    }
    // remoteAddress is not a rollout stickiness fallback, so this is random.
    const anonymous = tally(f, { remoteAddress: "10.0.0.1" })
    expect(anonymous).toBeGreaterThan(350)
    expect(anonymous).toBeLessThan(650)
    const random = tally(rollout(50, "random"), { userId: "alice" })
    expect(random).toBeGreaterThan(350)
    expect(random).toBeLessThan(650)
  })

  it("reports TARGETING_KEY_MISSING when a rollout's stickiness field is absent and nothing else matched", () => {
    const f = rollout(50, "tenantId")
    expect(evaluate(f, "production", { userId: "u1" })).toEqual({
      enabled: false,
      reason: "ERROR",
      errorCode: "TARGETING_KEY_MISSING",
      errorMessage: expect.stringContaining('"tenantId"')
    })
    const withFallback = flag([
      { name: "flexibleRollout", parameters: { rollout: 50, stickiness: "tenantId" } },
      { name: "userWithId", parameters: { userIds: ["u1"] } }
    ])
    expect(evaluate(withFallback, "production", { userId: "u1" })).toEqual({ enabled: true, reason: "TARGETING_MATCH" })
    expect(evaluate(rollout(0, "tenantId"), "production", {})).toEqual({ enabled: false, reason: "DEFAULT" })
    const constrained = flag([
      { name: "flexibleRollout", parameters: { rollout: 50, stickiness: "tenantId" }, constraints: [{ contextName: "beta", operator: "IN", values: ["yes"] }] }
    ])
    expect(evaluate(constrained, "production", {})).toEqual({ enabled: false, reason: "DEFAULT" })
  })
})

describe("variants", () => {
  const weighted = [
    { name: "red", weight: 200 },
    { name: "green", weight: 300, payload: { type: "json", value: '{"shade":2}' } },
    { name: "blue", weight: 500 }
  ]
  const expectedVariant = (id: string, groupId: string, variants: ReadonlyArray<{ name: string; weight: number }>) => {
    const target = referenceBucket(id, groupId, 1000, VARIANT_HASH_SEED)
    let running = 0
    return variants.find((v) => (running += v.weight) >= target)!.name
  }

  it("splits 200/300/500 within 2.5 points over 10,000 users, exactly as Unleash picks", () => {
    const f = flag([{ name: "default" }], { variants: weighted })
    const counts: Record<string, number> = { red: 0, green: 0, blue: 0 }
    for (let i = 0; i < 10_000; i++) {
      const id = `user-${i}`
      const result = evaluate(f, "production", { userId: id })
      expect(result.variant?.name).toBe(expectedVariant(id, "checkout.new-flow", weighted))
      counts[result.variant!.name]!++
    }
    expect(Math.abs(counts.red! / 100 - 20)).toBeLessThanOrEqual(2.5)
    expect(Math.abs(counts.green! / 100 - 30)).toBeLessThanOrEqual(2.5)
    expect(Math.abs(counts.blue! / 100 - 50)).toBeLessThanOrEqual(2.5)
  })

  it("gives a context the same variant every time, with its payload and reason SPLIT", () => {
    const f = flag([{ name: "default" }], { variants: weighted })
    const first = evaluate(f, "production", { sessionId: "s-42" })
    for (let i = 0; i < 50; i++) expect(evaluate(f, "production", { sessionId: "s-42" })).toEqual(first)
    expect(first.reason).toBe("SPLIT")
    const green = Array.from({ length: 100 }, (_, i) => `u${i}`).find((id) => expectedVariant(id, "checkout.new-flow", weighted) === "green")!
    expect(evaluate(f, "production", { userId: green })).toEqual({
      enabled: true,
      reason: "SPLIT",
      variant: { name: "green", payload: { type: "json", value: '{"shade":2}' } }
    })
    const single = flag([{ name: "default" }], { variants: [{ name: "only", weight: 1000 }] })
    expect(evaluate(single, "production", { userId: "x" })).toEqual({ enabled: true, reason: "STATIC", variant: { name: "only" } })
  })

  it("uses the first variant's stickiness field, falling back through userId, sessionId, remoteAddress", () => {
    const byTenant = weighted.map((v, i) => (i === 0 ? { ...v, stickiness: "tenantId" } : v))
    const f = flag([{ name: "default" }], { variants: byTenant })
    for (let i = 0; i < 30; i++) {
      expect(evaluate(f, "production", { tenantId: "acme", userId: `u${i}` }).variant?.name).toBe(expectedVariant("acme", "checkout.new-flow", weighted))
    }
    const g = flag([{ name: "default" }], { variants: weighted })
    for (let i = 0; i < 30; i++) {
      const address = `10.0.0.${i}`
      expect(evaluate(g, "production", { remoteAddress: address }).variant?.name).toBe(expectedVariant(address, "checkout.new-flow", weighted))
      expect(evaluate(g, "production", { sessionId: `s${i}`, remoteAddress: address }).variant?.name).toBe(expectedVariant(`s${i}`, "checkout.new-flow", weighted))
    }
  })

  it("takes a matching strategy's variants over the flag's, hashed by the strategy's groupId", () => {
    const own = [
      { name: "a", weight: 500 },
      { name: "b", weight: 500 }
    ]
    const f = flag(
      [
        { name: "userWithId", parameters: { userIds: ["vip"] }, variants: [{ name: "vip", weight: 1000 }] },
        { name: "flexibleRollout", parameters: { rollout: 100, stickiness: "default", groupId: "g" }, variants: own }
      ],
      { variants: weighted }
    )
    expect(evaluate(f, "production", { userId: "vip" }).variant).toEqual({ name: "vip" })
    for (let i = 0; i < 50; i++) {
      expect(evaluate(f, "production", { userId: `u${i}` }).variant?.name).toBe(expectedVariant(`u${i}`, "g", own))
    }
    const noOwn = flag([{ name: "default", variants: [] }], { variants: weighted })
    expect(evaluate(noOwn, "production", { userId: "u1" }).variant?.name).toBe(expectedVariant("u1", "checkout.new-flow", weighted))
  })

  it("gives no variant when the flag is off", () => {
    const f = flag([{ name: "userWithId", parameters: { userIds: ["u1"] } }], { variants: weighted })
    expect(evaluate(f, "production", { userId: "u2" })).toEqual({ enabled: false, reason: "DEFAULT" })
  })
})

describe("validation", () => {
  const problem = (overrides: { strategies?: ReadonlyArray<unknown>; extra?: Record<string, unknown> }): string => {
    const decoded = Schema.decodeUnknownEither(FlagDefinition)({
      key: "checkout.new-flow",
      type: "release",
      description: "",
      enabled: true,
      environments: { production: { enabled: true, strategies: overrides.strategies ?? [{ name: "default" }] } },
      variants: [],
      archived: false,
      ...overrides.extra
    })
    if (Either.isRight(decoded)) throw new Error("expected the definition to be refused")
    return decoded.left.message
  }
  const constraint = (c: Record<string, unknown>) => problem({ strategies: [{ name: "default", constraints: [c] }] })

  it("accepts a complete, valid definition", () => {
    const f = flag(
      [
        {
          name: "flexibleRollout",
          parameters: { rollout: 25, stickiness: "tenantId", groupId: "g" },
          constraints: [
            { contextName: "appVersion", operator: "SEMVER_GT", value: "1.2.3-rc.1" },
            { contextName: "currentTime", operator: "DATE_BEFORE", value: "2027-01-01T00:00:00.000+05:30" },
            { contextName: "age", operator: "NUM_GTE", value: "1e2" }
          ],
          variants: [{ name: "x", weight: 1000, payload: { type: "number", value: "1.5" } }]
        }
      ],
      { type: "kill-switch", variants: [{ name: "on", weight: 1000, payload: { type: "string", value: "" } }] }
    )
    expect(f.environments.production!.strategies).toHaveLength(1)
  })

  it("refuses variant weights that do not add up to 1000, naming the sum", () => {
    const weights = [{ name: "a", weight: 200 }, { name: "b", weight: 300 }, { name: "c", weight: 400 }]
    expect(problem({ extra: { variants: weights } })).toContain("variant weights add up to 900, not 1000")
    expect(problem({ strategies: [{ name: "default", variants: [{ name: "a", weight: 999 }] }] })).toContain(
      "variant weights add up to 999, not 1000"
    )
    expect(problem({ extra: { variants: [{ name: "a", weight: 500 }, { name: "a", weight: 500 }] } })).toContain('variant name "a" is used twice')
  })

  it("refuses bad operator values, naming the operator and the value", () => {
    expect(constraint({ contextName: "age", operator: "NUM_GT", value: "abc" })).toContain('NUM_GT value "abc" is not a number')
    expect(constraint({ contextName: "age", operator: "NUM_EQ", value: " " })).toContain('NUM_EQ value " " is not a number')
    expect(constraint({ contextName: "age", operator: "NUM_LT" })).toContain('NUM_LT needs a "value"')
    expect(constraint({ contextName: "currentTime", operator: "DATE_AFTER", value: "2026-02-30" })).toContain(
      'DATE_AFTER value "2026-02-30" is not an ISO 8601 date'
    )
    expect(constraint({ contextName: "currentTime", operator: "DATE_BEFORE", value: "2026-01-01T10:00:00" })).toContain(
      'DATE_BEFORE value "2026-01-01T10:00:00" is not an ISO 8601 date'
    )
    expect(constraint({ contextName: "v", operator: "SEMVER_GT", value: "1.2" })).toContain('SEMVER_GT value "1.2" is not a semantic version')
    expect(constraint({ contextName: "v", operator: "SEMVER_EQ", value: "01.2.3" })).toContain('SEMVER_EQ value "01.2.3" is not a semantic version')
    expect(constraint({ contextName: "tenant", operator: "IN" })).toContain('IN needs a non-empty "values" list')
    expect(constraint({ contextName: "tenant", operator: "STR_CONTAINS", values: [] })).toContain('STR_CONTAINS needs a non-empty "values" list')
  })

  it("refuses an unknown operator, naming it", () => {
    expect(constraint({ contextName: "tenant", operator: "REGEX", value: ".*" })).toContain('unknown operator "REGEX"; expected one of IN, NOT_IN')
  })

  it("refuses bad payloads, keys, types and rollouts", () => {
    expect(problem({ extra: { variants: [{ name: "a", weight: 1000, payload: { type: "number", value: "ten" } }] } })).toContain(
      'number payload "ten" is not a number'
    )
    expect(problem({ extra: { variants: [{ name: "a", weight: 1000, payload: { type: "json", value: "{oops" } }] } })).toContain(
      "json payload is not valid JSON"
    )
    expect(problem({ extra: { key: "Bad Key" } })).toContain('flag key "Bad Key" must be 1-100 characters')
    expect(problem({ extra: { type: "toggle" } })).toContain('"toggle"')
    expect(problem({ strategies: [{ name: "flexibleRollout", parameters: { rollout: 101, stickiness: "default" } }] })).toContain("101")
    expect(problem({ strategies: [{ name: "gradualRollout" }] })).toContain('"gradualRollout"')
  })
})
