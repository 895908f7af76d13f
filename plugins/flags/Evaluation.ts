/**
 * The flag evaluation engine: pure functions with Unleash's semantics, reporting results in
 * OpenFeature's vocabulary (reason, variant, errorCode).
 *
 * Decisions where Unleash leaves room or we differ:
 * - An enabled environment with no strategies is off with reason DEFAULT. (Unleash's SDKs
 *   would turn it on; its server never stores that state, adding a `default` strategy on
 *   enable, so here an empty list cannot silently release a flag to everyone.)
 * - A flexibleRollout whose explicit stickiness field is absent from the context does not
 *   match; if no strategy matches and that is why, the result is ERROR /
 *   TARGETING_KEY_MISSING naming the field, because the answer is unknown rather than "off".
 *   userWithId without a userId is an ordinary non-match: the user is simply not listed.
 * - A variant picked by hash among several weighted variants makes the reason SPLIT, since
 *   the value then depends on who asks (OpenFeature's STATIC promises it does not).
 * - Strategy variants hash with the strategy's groupId, falling back to the flag key (Unleash
 *   would hash "undefined").
 * - Context values 0 and false count as present (Unleash's truthiness test drops them);
 *   only absent and empty-string fields are missing. A missing `environment` is the
 *   environment being evaluated, a missing `currentTime` is now.
 *
 * Flag definitions are treated as immutable: constraint value lists are compiled once per
 * constraint object and cached by identity.
 */
import {
  compareSemver,
  parseIsoDate,
  parseNumber,
  parseSemver,
  type Constraint,
  type EvaluationContext,
  type EvaluationResult,
  type FlagDefinition,
  type SemVer,
  type Strategy,
  type Variant
} from "./Domain.ts"
import { normalizedHash } from "./Murmur.ts"

/** Unleash hashes variant buckets with this seed so they are independent of rollout buckets. */
const VARIANT_HASH_SEED = 86028157

const result = (enabled: boolean, reason: EvaluationResult["reason"]): EvaluationResult =>
  Object.freeze({ enabled, reason })
const DISABLED = result(false, "DISABLED")
const OFF = result(false, "DEFAULT")
const ON_STATIC = result(true, "STATIC")
const ON_TARGETING = result(true, "TARGETING_MATCH")
const ON_SPLIT = result(true, "SPLIT")
const onWith = (reason: EvaluationResult["reason"]) =>
  reason === "STATIC" ? ON_STATIC : reason === "SPLIT" ? ON_SPLIT : ON_TARGETING

/**
 * A context field as a non-empty string or a number, or undefined when missing.
 * Own-property semantics come from the typeof tests: inherited members such as
 * `constructor` are functions and so read as missing.
 */
const lookup = (context: EvaluationContext, name: string, environment: string): string | number | undefined => {
  const v: unknown = context[name]
  if (typeof v === "string") {
    if (v !== "") return v
  } else if (typeof v === "number") {
    return v
  } else if (typeof v === "boolean") {
    return v ? "true" : "false"
  }
  if (name === "userId") {
    const key = context.targetingKey
    return typeof key === "string" && key !== "" ? key : undefined
  }
  return name === "environment" ? environment : undefined
}

const lookupString = (context: EvaluationContext, name: string, environment: string): string | undefined => {
  const v = lookup(context, name, environment)
  return typeof v === "number" ? String(v) : v
}

type Compiled =
  | { readonly kind: "in"; readonly values: ReadonlySet<string> }
  | { readonly kind: "string"; readonly values: ReadonlyArray<string> }
  | { readonly kind: "number"; readonly value: number }
  | { readonly kind: "date"; readonly value: number }
  | { readonly kind: "semver"; readonly value: SemVer }
  // A value that does not parse (a definition that skipped validation): matches nothing.
  | { readonly kind: "never" }

const NEVER: Compiled = { kind: "never" }
const compiledConstraints = new WeakMap<Constraint, Compiled>()

// Unleash trims list values and drops blank ones.
const cleanValues = (values: ReadonlyArray<string> | undefined, lowerCase: boolean): Array<string> => {
  const out: Array<string> = []
  for (const raw of values ?? []) {
    const v = raw.trim()
    if (v !== "") out.push(lowerCase ? v.toLowerCase() : v)
  }
  return out
}

const compile = (c: Constraint): Compiled => {
  const ci = c.caseInsensitive === true
  switch (c.operator) {
    case "IN":
    case "NOT_IN":
      return { kind: "in", values: new Set(cleanValues(c.values, ci)) }
    case "STR_STARTS_WITH":
    case "STR_ENDS_WITH":
    case "STR_CONTAINS":
      return { kind: "string", values: cleanValues(c.values, ci) }
    case "NUM_EQ":
    case "NUM_GT":
    case "NUM_GTE":
    case "NUM_LT":
    case "NUM_LTE": {
      const value = c.value === undefined ? undefined : parseNumber(c.value)
      return value === undefined ? NEVER : { kind: "number", value }
    }
    case "DATE_AFTER":
    case "DATE_BEFORE": {
      const value = c.value === undefined ? undefined : parseIsoDate(c.value)
      return value === undefined ? NEVER : { kind: "date", value }
    }
    case "SEMVER_EQ":
    case "SEMVER_GT":
    case "SEMVER_LT": {
      const value = c.value === undefined ? undefined : parseSemver(c.value)
      return value === undefined ? NEVER : { kind: "semver", value }
    }
  }
}

const compiled = (c: Constraint): Compiled => {
  let found = compiledConstraints.get(c)
  if (found === undefined) {
    found = compile(c)
    compiledConstraints.set(c, found)
  }
  return found
}

const operatorMatches = (c: Constraint, context: EvaluationContext, environment: string): boolean => {
  const rule = compiled(c)
  switch (rule.kind) {
    case "in": {
      const v = lookupString(context, c.contextName, environment)
      const isIn = v !== undefined && rule.values.has(c.caseInsensitive === true ? v.toLowerCase() : v)
      // A missing field is "not in" any list, so NOT_IN matches it (as Unleash).
      return c.operator === "IN" ? isIn : !isIn
    }
    case "string": {
      let v = lookupString(context, c.contextName, environment)
      if (v === undefined) return false
      if (c.caseInsensitive === true) v = v.toLowerCase()
      for (const x of rule.values) {
        if (c.operator === "STR_STARTS_WITH" ? v.startsWith(x) : c.operator === "STR_ENDS_WITH" ? v.endsWith(x) : v.includes(x)) {
          return true
        }
      }
      return false
    }
    case "number": {
      const raw = lookup(context, c.contextName, environment)
      const v = typeof raw === "string" ? parseNumber(raw) : raw
      if (v === undefined) return false
      switch (c.operator) {
        case "NUM_EQ":
          return v === rule.value
        case "NUM_GT":
          return v > rule.value
        case "NUM_GTE":
          return v >= rule.value
        case "NUM_LT":
          return v < rule.value
        default:
          return v <= rule.value
      }
    }
    case "date": {
      const raw = lookup(context, c.contextName, environment)
      // Numbers are epoch milliseconds; strings are read leniently, as Unleash's `new Date(...)`.
      const at =
        raw === undefined ? (c.contextName === "currentTime" ? Date.now() : NaN) : typeof raw === "number" ? raw : Date.parse(raw)
      if (Number.isNaN(at)) return false
      return c.operator === "DATE_AFTER" ? at > rule.value : at < rule.value
    }
    case "semver": {
      const raw = lookupString(context, c.contextName, environment)
      const v = raw === undefined ? undefined : parseSemver(raw)
      if (v === undefined) return false
      const order = compareSemver(v, rule.value)
      return c.operator === "SEMVER_EQ" ? order === 0 : c.operator === "SEMVER_GT" ? order > 0 : order < 0
    }
    case "never":
      return false
  }
}

/** One constraint, with `inverted` applied: an inverted constraint on a missing field matches. */
const constraintMatches = (c: Constraint, context: EvaluationContext, environment: string): boolean =>
  operatorMatches(c, context, environment) !== (c.inverted === true)

const userIdSets = new WeakMap<ReadonlyArray<string>, ReadonlySet<string>>()
const userIdSet = (userIds: ReadonlyArray<string>): ReadonlySet<string> => {
  let set = userIdSets.get(userIds)
  if (set === undefined) {
    set = new Set(cleanValues(userIds, false))
    userIdSets.set(userIds, set)
  }
  return set
}

const randomId = () => String(Math.floor(Math.random() * 100_000) + 1)

/** Unleash's rollout stickiness: "default" falls back to random only after userId and sessionId. */
const rolloutId = (stickiness: string, context: EvaluationContext, environment: string): string | undefined => {
  if (stickiness === "random") return randomId()
  if (stickiness !== "default") return lookupString(context, stickiness, environment)
  return lookupString(context, "userId", environment) ?? lookupString(context, "sessionId", environment) ?? randomId()
}

/** Unleash's variant stickiness: "default" also tries remoteAddress, and a missing field is random. */
const variantId = (stickiness: string, context: EvaluationContext, environment: string): string => {
  if (stickiness === "random") return randomId()
  if (stickiness !== "default") return lookupString(context, stickiness, environment) ?? randomId()
  return (
    lookupString(context, "userId", environment) ??
    lookupString(context, "sessionId", environment) ??
    lookupString(context, "remoteAddress", environment) ??
    randomId()
  )
}

/**
 * Unleash's variant pick: bucket 1..total weight, then the first variant whose running
 * weight reaches it. The first variant's stickiness applies to the whole list.
 */
const selectVariant = (
  variants: ReadonlyArray<Variant>,
  groupId: string,
  context: EvaluationContext,
  environment: string
): Variant | undefined => {
  let total = 0
  for (const v of variants) total += v.weight
  if (total <= 0) return undefined
  const target = normalizedHash(variantId(variants[0]!.stickiness ?? "default", context, environment), groupId, total, VARIANT_HASH_SEED)
  let running = 0
  for (const v of variants) {
    if (v.weight === 0) continue
    running += v.weight
    if (running >= target) return v
  }
  return undefined
}

const withVariants = (
  flag: FlagDefinition,
  strategy: Strategy,
  reason: EvaluationResult["reason"],
  context: EvaluationContext,
  environment: string
): EvaluationResult => {
  const own = strategy.variants !== undefined && strategy.variants.length > 0
  const variants = own ? strategy.variants! : flag.variants
  if (variants.length === 0) return onWith(reason)
  const groupId = own && strategy.name === "flexibleRollout" ? (strategy.parameters.groupId ?? flag.key) : flag.key
  const picked = selectVariant(variants, groupId, context, environment)
  if (picked === undefined) return onWith(reason)
  const variant = picked.payload === undefined ? { name: picked.name } : { name: picked.name, payload: picked.payload }
  // If other variants carry weight, the hash made the choice, whatever the strategy said.
  return { enabled: true, reason: variants.some((v) => v !== picked && v.weight > 0) ? "SPLIT" : reason, variant }
}

const constraintsMatch = (constraints: ReadonlyArray<Constraint> | undefined, context: EvaluationContext, environment: string) => {
  if (constraints === undefined) return true
  for (const c of constraints) if (!constraintMatches(c, context, environment)) return false
  return true
}

/**
 * Evaluates `flag` in `environment` for `context`. Strategies are tried in order and the
 * first that matches decides; a strategy matches when all its constraints do and its own
 * rule (everyone, a listed user, a rollout bucket) does.
 */
export const evaluate = (flag: FlagDefinition, environment: string, context: EvaluationContext): EvaluationResult => {
  if (!flag.enabled || flag.archived || !Object.hasOwn(flag.environments, environment)) return DISABLED
  const env = flag.environments[environment]!
  if (!env.enabled) return DISABLED
  let missingStickiness: string | undefined
  for (const strategy of env.strategies) {
    if (!constraintsMatch(strategy.constraints, context, environment)) continue
    switch (strategy.name) {
      case "default":
        return withVariants(
          flag,
          strategy,
          strategy.constraints === undefined || strategy.constraints.length === 0 ? "STATIC" : "TARGETING_MATCH",
          context,
          environment
        )
      case "userWithId": {
        const userId = lookupString(context, "userId", environment)
        if (userId !== undefined && userIdSet(strategy.parameters.userIds).has(userId)) {
          return withVariants(flag, strategy, "TARGETING_MATCH", context, environment)
        }
        break
      }
      case "flexibleRollout": {
        const { rollout, stickiness, groupId } = strategy.parameters
        if (rollout === 0) break
        const id = rolloutId(stickiness, context, environment)
        if (id === undefined) {
          missingStickiness ??= stickiness
          break
        }
        if (normalizedHash(id, groupId ?? flag.key) <= rollout) {
          return withVariants(flag, strategy, rollout < 100 ? "SPLIT" : "TARGETING_MATCH", context, environment)
        }
        break
      }
    }
  }
  if (missingStickiness !== undefined) {
    return {
      enabled: false,
      reason: "ERROR",
      errorCode: "TARGETING_KEY_MISSING",
      errorMessage: `the context has no "${missingStickiness}", which a flexibleRollout strategy of flag "${flag.key}" buckets by`
    }
  }
  return OFF
}
