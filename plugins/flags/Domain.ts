import { Schema } from "effect"

export const FlagKey = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9._-]{1,100}$/, {
    message: (issue) => `flag key ${JSON.stringify(issue.actual)} must be 1-100 characters of a-z, 0-9, ".", "_" or "-"`
  }),
  Schema.brand("FlagKey")
)
export type FlagKey = typeof FlagKey.Type

export const FlagType = Schema.Literal("release", "experiment", "operational", "kill-switch", "permission")
export type FlagType = typeof FlagType.Type

// Value parsers shared by validation and evaluation, so that every value an admin can save
// is one the engine can read.

/** A finite number written in decimal or exponent form; blank strings are not numbers. */
export const parseNumber = (value: string): number | undefined => {
  if (value.trim() === "") return undefined
  const n = Number(value)
  return Number.isFinite(n) ? n : undefined
}

const isoDate = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-](\d{2}):(\d{2})))?$/

const daysInMonth = (year: number, month: number): number =>
  month === 2
    ? year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28
    : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31

/**
 * Epoch milliseconds of an ISO 8601 date (`2026-01-31`, read as UTC) or date-time with a
 * `Z` or numeric offset. A date-time without a zone is refused: JavaScript would read it in
 * the server's local zone. Out-of-range fields are refused too (`Date.parse` rolls
 * 2026-02-30 over to March).
 */
export const parseIsoDate = (value: string): number | undefined => {
  const m = isoDate.exec(value)
  if (m === null) return undefined
  const year = Number(m[1])
  const month = Number(m[2])
  const day = Number(m[3])
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined
  if (m[4] !== undefined) {
    if (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6] ?? 0) > 59) return undefined
    if (m[8] !== undefined && (Number(m[8]) > 23 || Number(m[9]) > 59)) return undefined
  }
  const ms = Date.parse(value)
  return Number.isNaN(ms) ? undefined : ms
}

export interface SemVer {
  readonly major: number
  readonly minor: number
  readonly patch: number
  /** Numeric identifiers as numbers, the others as strings; empty for a release. */
  readonly prerelease: ReadonlyArray<string | number>
}

// The SemVer 2.0.0 grammar (semver.org), with the optional leading "v" that node-semver,
// and so Unleash's Node SDK, accepts.
const semverPattern =
  /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$/

export const parseSemver = (value: string): SemVer | undefined => {
  const m = semverPattern.exec(value)
  if (m === null) return undefined
  return {
    major: Number(m[1]),
    minor: Number(m[2]),
    patch: Number(m[3]),
    prerelease: m[4] === undefined ? [] : m[4].split(".").map((id) => (/^\d+$/.test(id) ? Number(id) : id))
  }
}

/** SemVer 2.0.0 precedence: negative, zero or positive; build metadata is ignored. */
export const compareSemver = (a: SemVer, b: SemVer): number => {
  if (a.major !== b.major) return a.major - b.major
  if (a.minor !== b.minor) return a.minor - b.minor
  if (a.patch !== b.patch) return a.patch - b.patch
  const ap = a.prerelease
  const bp = b.prerelease
  // A release ranks above any of its pre-releases.
  if (ap.length === 0 || bp.length === 0) return bp.length - ap.length
  const n = Math.min(ap.length, bp.length)
  for (let i = 0; i < n; i++) {
    const x = ap[i]!
    const y = bp[i]!
    if (x === y) continue
    if (typeof x === "number") return typeof y === "number" ? x - y : -1
    if (typeof y === "number") return 1
    return x < y ? -1 : 1
  }
  return ap.length - bp.length
}

export const ListOperator = Schema.Literal("IN", "NOT_IN", "STR_STARTS_WITH", "STR_ENDS_WITH", "STR_CONTAINS")
export const NumberOperator = Schema.Literal("NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE")
export const DateOperator = Schema.Literal("DATE_AFTER", "DATE_BEFORE")
export const SemverOperator = Schema.Literal("SEMVER_EQ", "SEMVER_GT", "SEMVER_LT")
export const Operator = Schema.Literal(
  ...ListOperator.literals,
  ...NumberOperator.literals,
  ...DateOperator.literals,
  ...SemverOperator.literals
).annotations({
  // Without override a union reports one "Expected X" line per literal.
  message: (issue) => ({
    message: `unknown operator ${JSON.stringify(issue.actual)}; expected one of ${Operator.literals.join(", ")}`,
    override: true
  })
})
export type Operator = typeof Operator.Type

const isListOperator = Schema.is(ListOperator)
const isNumberOperator = Schema.is(NumberOperator)
const isDateOperator = Schema.is(DateOperator)

/** Why a constraint cannot be saved, or undefined when it can. */
const constraintProblem = (c: {
  readonly operator: Operator
  readonly values?: ReadonlyArray<string> | undefined
  readonly value?: string | undefined
}): string | undefined => {
  const op = c.operator
  if (isListOperator(op)) {
    return c.values === undefined || c.values.length === 0 ? `${op} needs a non-empty "values" list` : undefined
  }
  if (c.value === undefined) return `${op} needs a "value"`
  if (isNumberOperator(op)) {
    return parseNumber(c.value) === undefined ? `${op} value ${JSON.stringify(c.value)} is not a number` : undefined
  }
  if (isDateOperator(op)) {
    return parseIsoDate(c.value) === undefined
      ? `${op} value ${JSON.stringify(c.value)} is not an ISO 8601 date or date-time with a zone (e.g. 2026-01-31T09:00:00Z)`
      : undefined
  }
  return parseSemver(c.value) === undefined
    ? `${op} value ${JSON.stringify(c.value)} is not a semantic version (major.minor.patch[-prerelease])`
    : undefined
}

/**
 * A condition on one context field. As in Unleash, IN, NOT_IN and the STR_ operators read
 * `values`; the NUM_, DATE_ and SEMVER_ operators read the single `value`.
 */
export const Constraint = Schema.Struct({
  contextName: Schema.String.pipe(Schema.minLength(1)),
  operator: Operator,
  values: Schema.optional(Schema.Array(Schema.String)),
  value: Schema.optional(Schema.String),
  inverted: Schema.optional(Schema.Boolean),
  caseInsensitive: Schema.optional(Schema.Boolean)
}).pipe(Schema.filter(constraintProblem, { identifier: "Constraint" }))
export type Constraint = typeof Constraint.Type

export const VariantPayload = Schema.Struct({
  type: Schema.Literal("string", "number", "json"),
  value: Schema.String
}).pipe(
  Schema.filter((p) => {
    if (p.type === "number" && parseNumber(p.value) === undefined) return `number payload ${JSON.stringify(p.value)} is not a number`
    if (p.type === "json") {
      try {
        JSON.parse(p.value)
      } catch {
        return `json payload is not valid JSON: ${JSON.stringify(p.value.slice(0, 100))}`
      }
    }
    return undefined
  }, { identifier: "VariantPayload" })
)
export type VariantPayload = typeof VariantPayload.Type

export const Variant = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1)),
  weight: Schema.Int.pipe(Schema.between(0, 1000)),
  /** A context field name, "default" or "random"; Unleash reads it from the first variant only. */
  stickiness: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  payload: Schema.optional(VariantPayload)
})
export type Variant = typeof Variant.Type

/** Empty, or weights adding up to 1000 with distinct names. */
export const Variants = Schema.Array(Variant).pipe(
  Schema.filter((variants) => {
    if (variants.length === 0) return undefined
    let sum = 0
    const names = new Set<string>()
    for (const v of variants) {
      sum += v.weight
      if (names.has(v.name)) return `variant name ${JSON.stringify(v.name)} is used twice`
      names.add(v.name)
    }
    return sum === 1000 ? undefined : `variant weights add up to ${sum}, not 1000`
  }, { identifier: "Variants" })
)

const strategyFields = {
  constraints: Schema.optional(Schema.Array(Constraint)),
  /** When non-empty, these replace the flag's variants for contexts this strategy matches. */
  variants: Schema.optional(Variants)
}

export const DefaultStrategy = Schema.Struct({ name: Schema.Literal("default"), ...strategyFields }).annotations({
  identifier: "DefaultStrategy"
})

export const UserWithIdStrategy = Schema.Struct({
  name: Schema.Literal("userWithId"),
  parameters: Schema.Struct({ userIds: Schema.Array(Schema.String) }),
  ...strategyFields
}).annotations({ identifier: "UserWithIdStrategy" })

export const FlexibleRolloutStrategy = Schema.Struct({
  name: Schema.Literal("flexibleRollout"),
  parameters: Schema.Struct({
    rollout: Schema.Int.pipe(Schema.between(0, 100)),
    /** A context field name, "default" (userId, then sessionId, then random) or "random". */
    stickiness: Schema.String.pipe(Schema.minLength(1)),
    /** Defaults to the flag key; share one across flags to roll them out to the same users. */
    groupId: Schema.optional(Schema.String)
  }),
  ...strategyFields
}).annotations({ identifier: "FlexibleRolloutStrategy" })

export const Strategy = Schema.Union(DefaultStrategy, UserWithIdStrategy, FlexibleRolloutStrategy)
export type Strategy = typeof Strategy.Type

export const EnvironmentConfig = Schema.Struct({
  enabled: Schema.Boolean,
  strategies: Schema.Array(Strategy)
}).annotations({ identifier: "EnvironmentConfig" })
export type EnvironmentConfig = typeof EnvironmentConfig.Type

export const FlagDefinition = Schema.Struct({
  key: FlagKey,
  type: FlagType,
  description: Schema.String,
  enabled: Schema.Boolean,
  environments: Schema.Record({ key: Schema.String, value: EnvironmentConfig }),
  variants: Variants,
  archived: Schema.Boolean
}).annotations({ identifier: "FlagDefinition" })
export type FlagDefinition = typeof FlagDefinition.Type

/**
 * The attributes a flag is evaluated against. Unleash's field names (userId, sessionId,
 * remoteAddress, environment, appName, currentTime) have their Unleash meaning; OpenFeature's
 * `targetingKey` stands in for `userId` when that is absent.
 */
export const EvaluationContext = Schema.Struct(
  { targetingKey: Schema.optional(Schema.String) },
  Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Number, Schema.Boolean) })
)
export type EvaluationContext = typeof EvaluationContext.Type

export const EvaluationReason = Schema.Literal("STATIC", "DEFAULT", "TARGETING_MATCH", "SPLIT", "DISABLED", "ERROR")
export type EvaluationReason = typeof EvaluationReason.Type

export const EvaluationErrorCode = Schema.Literal("TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL")
export type EvaluationErrorCode = typeof EvaluationErrorCode.Type

export const EvaluationResult = Schema.Struct({
  enabled: Schema.Boolean,
  reason: EvaluationReason,
  variant: Schema.optional(Schema.Struct({ name: Schema.String, payload: Schema.optional(VariantPayload) })),
  errorCode: Schema.optional(EvaluationErrorCode),
  errorMessage: Schema.optional(Schema.String)
})
export type EvaluationResult = typeof EvaluationResult.Type
