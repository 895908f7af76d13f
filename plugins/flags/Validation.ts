import type { HttpServerRequest } from "@effect/platform"
import { Effect, Either, ParseResult, Schema } from "effect"
import { BadRequest } from "../../core/Errors.ts"
import type { Variant } from "./Domain.ts"
import type { FlagSpec } from "./Model.ts"

/** `environments.production.strategies[0].constraints[1].operator` */
const formatPath = (path: ReadonlyArray<PropertyKey>) =>
  path.reduce<string>(
    (out, segment) => (typeof segment === "number" ? `${out}[${segment}]` : out === "" ? String(segment) : `${out}.${String(segment)}`),
    ""
  )

const samePath = (a: ReadonlyArray<PropertyKey>, b: ReadonlyArray<PropertyKey>) =>
  a.length === b.length && a.every((segment, i) => segment === b[i])

const isPrefix = (prefix: ReadonlyArray<PropertyKey>, path: ReadonlyArray<PropertyKey>) =>
  prefix.length <= path.length && prefix.every((segment, i) => segment === path[i])

const expectation = /^Expected (.+), actual (.+)$/s

/**
 * One 400 naming every problem with its field. Two kinds of noise from the formatter go: an
 * optional field's "Expected undefined" beside the real problem at or inside it, and one
 * "Expected X" line per member of a union of literals (merged into one line).
 */
const badRequestOf = (error: ParseResult.ParseError): BadRequest => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error).filter(
    (issue, _, all) =>
      !(issue.message.startsWith("Expected undefined,") && all.some((other) => other !== issue && isPrefix(issue.path, other.path)))
  )
  const merged: Array<{ path: ReadonlyArray<PropertyKey>; message: string }> = []
  for (const issue of issues) {
    const expected = expectation.exec(issue.message)
    const previous = merged.find((m) => samePath(m.path, issue.path))
    const previousExpected = previous === undefined ? null : expectation.exec(previous.message)
    if (expected !== null && previous !== undefined && previousExpected !== null && previousExpected[2] === expected[2]) {
      previous.message = `Expected ${previousExpected[1]} | ${expected[1]}, actual ${expected[2]}`
    } else {
      merged.push({ path: issue.path, message: issue.message })
    }
  }
  const described = merged.map((issue) => {
    const path = formatPath(issue.path)
    return path === "" ? issue.message : `${path}: ${issue.message}`
  })
  const field = merged[0] === undefined ? "" : formatPath(merged[0].path)
  return new BadRequest({ message: described.join("; "), ...(field === "" ? {} : { field }) })
}

/**
 * Reads and decodes a JSON body with the engine's Schemas, so a 400 carries their messages
 * (weights that do not add up, unknown operators, bad strategy parameters) with the field.
 * An unreadable or oversize body is left to the runtime, which answers 400 or 413.
 */
export const decodeBody =
  <A, I>(schema: Schema.Schema<A, I, never>) =>
  (request: HttpServerRequest.HttpServerRequest): Effect.Effect<A, BadRequest> =>
    Effect.flatMap(Effect.orDie(request.text), (text) => {
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (error) {
        return Effect.fail(new BadRequest({ message: `the request body is not JSON: ${(error as Error).message}` }))
      }
      const decoded = Schema.decodeUnknownEither(schema, { errors: "all" })(json)
      return Either.isRight(decoded) ? Effect.succeed(decoded.right) : Effect.fail(badRequestOf(decoded.left))
    })

interface PlacedVariant {
  readonly field: string
  readonly variant: Variant
}

const variantsOf = (spec: FlagSpec): ReadonlyArray<PlacedVariant> => {
  const placed: Array<PlacedVariant> = spec.variants.map((variant, i) => ({ field: `variants[${i}]`, variant }))
  for (const [environment, config] of Object.entries(spec.environments)) {
    config.strategies.forEach((strategy, s) =>
      (strategy.variants ?? []).forEach((variant, i) =>
        placed.push({ field: `environments.${environment}.strategies[${s}].variants[${i}]`, variant })
      )
    )
  }
  return placed
}

const payloadKind = (variant: Variant) => variant.payload?.type ?? "none"

/**
 * OFREP has no value type in its requests, so a flag's value type must not depend on who
 * asks: every variant of a flag, its strategies' included, carries a payload of one type, or
 * none does.
 */
const payloadTypeProblem = (spec: FlagSpec, prefix: string): BadRequest | undefined => {
  const placed = variantsOf(spec)
  const first = placed[0]
  const other = placed.find((p) => payloadKind(p.variant) !== payloadKind(first!.variant))
  if (first === undefined || other === undefined) return undefined
  const describe = (p: PlacedVariant) =>
    p.variant.payload === undefined ? `variant "${p.variant.name}" has no payload` : `variant "${p.variant.name}" has a ${p.variant.payload.type} payload`
  return new BadRequest({
    message: `${prefix}${other.field}: ${describe(other)} but ${describe(first)} (${prefix}${first.field}); a flag's variants carry payloads of one type, or none`,
    field: `${prefix}${other.field}`
  })
}

/** What the Schemas cannot see: environments the organisation has, one payload type per flag. */
export const specProblem = (spec: FlagSpec, environments: ReadonlySet<string>, prefix = ""): BadRequest | undefined => {
  const unknown = Object.keys(spec.environments).find((name) => !environments.has(name))
  if (unknown !== undefined) {
    return new BadRequest({
      message: `${prefix}environments.${unknown}: the organisation has no environment "${unknown}"; it has ${[...environments].join(", ")}`,
      field: `${prefix}environments.${unknown}`
    })
  }
  return payloadTypeProblem(spec, prefix)
}

/** Structural JSON equality, blind to key order (jsonb does not keep it). */
export const sameJson = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  const ak = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined)
  const bk = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined)
  return ak.length === bk.length && ak.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}

type Changes = Record<string, unknown>

/**
 * The audit trail's before/after: only the fields that changed, and for `environments` only
 * the environments that changed. A created flag has no before, a deleted one no after.
 */
export const diff = (before: FlagSpec | null, after: FlagSpec | null): { before: Changes | null; after: Changes | null } => {
  if (before === null || after === null) return { before, after }
  const was: Changes = {}
  const is: Changes = {}
  for (const field of Object.keys(after) as Array<keyof FlagSpec>) {
    if (sameJson(before[field], after[field])) continue
    if (field === "environments") {
      const names = new Set([...Object.keys(before.environments), ...Object.keys(after.environments)])
      const wasEnv: Changes = {}
      const isEnv: Changes = {}
      for (const name of names) {
        if (sameJson(before.environments[name], after.environments[name])) continue
        wasEnv[name] = before.environments[name] ?? null
        isEnv[name] = after.environments[name] ?? null
      }
      was.environments = wasEnv
      is.environments = isEnv
    } else {
      was[field] = before[field]
      is[field] = after[field]
    }
  }
  return { before: was, after: is }
}
