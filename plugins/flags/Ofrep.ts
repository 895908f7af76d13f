/**
 * OFREP (OpenFeature Remote Evaluation Protocol, open-feature/protocol service/openapi.yaml)
 * answers from the engine's results.
 *
 * Values and types. OFREP requests carry no value type (the protocol's ADR 0003): a provider
 * reads the type of `value` and raises TYPE_MISMATCH itself when it is not what the caller
 * asked for. So the server makes a flag's type a property of the flag, never of the caller:
 * - a flag without variant payloads is a boolean flag: `value` is whether it is on, and
 *   `variant` names the picked variant if it has variants;
 * - a flag whose variants carry payloads (the admin API refuses mixing payload types) has
 *   their type: string, number, or object/array (json); `value` is the picked variant's
 *   payload, typed.
 * A 200 always carries a value of the flag's type. A typed flag that is off for the context
 * (disabled, environment off, no strategy matched) has no value of its type, so the answer
 * is TYPE_MISMATCH naming the reason; the provider then uses the caller's code default, which
 * is what "off" means for a non-boolean flag. (A `false` would be a boolean where the caller
 * reads a string, and telling "off" apart from an error needs OFREP's proposed value-less
 * answer, ADR 0006, which providers do not implement yet.)
 *
 * Errors. Unknown and archived flags are 404 FLAG_NOT_FOUND. A flexibleRollout whose
 * stickiness field is missing from the context answers TARGETING_KEY_MISSING; a context that
 * is not an object, or a non-string `targetingKey`, INVALID_CONTEXT; a body that is not JSON,
 * or a stored payload that does not parse, PARSE_ERROR. Context values that are not strings,
 * numbers or booleans cannot be matched by any constraint and are ignored.
 */
import { Either } from "effect"
import { createHash } from "node:crypto"
import { parseNumber, type EvaluationContext, type EvaluationResult, type FlagDefinition } from "./Domain.ts"
import type { OfrepFailure, OfrepSuccess } from "./Model.ts"

type ValueType = "boolean" | "string" | "number" | "json"

const typeNames: Record<ValueType, string> = { boolean: "boolean", string: "string", number: "number", json: "object" }

/** The flag's value type: that of its variants' payloads, else boolean. */
const valueTypeOf = (flag: FlagDefinition): ValueType => {
  for (const variant of flag.variants) if (variant.payload !== undefined) return variant.payload.type
  for (const environment of Object.values(flag.environments)) {
    for (const strategy of environment.strategies) {
      for (const variant of strategy.variants ?? []) if (variant.payload !== undefined) return variant.payload.type
    }
  }
  return "boolean"
}

const failure = (key: string, errorCode: OfrepFailure["errorCode"], errorDetails: string): OfrepFailure => ({
  key,
  errorCode,
  errorDetails
})

/** The OFREP answer for one evaluated flag: a success (200) or a failure (400). */
export const answerOf = (flag: FlagDefinition, environment: string, result: EvaluationResult): OfrepSuccess | OfrepFailure => {
  const key = flag.key
  if (result.errorCode !== undefined) {
    return failure(key, result.errorCode, result.errorMessage ?? `flag "${key}" cannot be evaluated for this context`)
  }
  const metadata = { flagType: flag.type, environment }
  const type = valueTypeOf(flag)
  const variant = result.variant
  if (type === "boolean") {
    return { key, value: result.enabled, reason: result.reason, ...(variant === undefined ? {} : { variant: variant.name }), metadata }
  }
  const payload = variant?.payload
  if (variant === undefined || payload === undefined || payload.type !== type) {
    return failure(
      key,
      "TYPE_MISMATCH",
      variant === undefined
        ? `flag "${key}" has ${typeNames[type]} values but is off for this context (${result.reason}), so it has no ${typeNames[type]} value; use the code default`
        : `variant "${variant.name}" of flag "${key}" has ${payload === undefined ? "no payload" : `a ${payload.type} payload`}, but the flag's values are ${typeNames[type]}s`
    )
  }
  let value: unknown
  if (payload.type === "string") {
    value = payload.value
  } else if (payload.type === "number") {
    value = parseNumber(payload.value)
  } else {
    try {
      value = JSON.parse(payload.value)
    } catch {
      value = undefined
    }
  }
  if (value === undefined) {
    return failure(key, "PARSE_ERROR", `the ${payload.type} payload of variant "${variant.name}" of flag "${key}" does not parse`)
  }
  return { key, value, reason: result.reason, variant: variant.name, metadata }
}

export const isFailure = (answer: OfrepSuccess | OfrepFailure): answer is OfrepFailure => "errorCode" in answer

type RequestProblem = Pick<OfrepFailure, "errorCode" | "errorDetails">

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The evaluation context of an OFREP request body (`{"context": {...}}`; an empty body is no context). */
export const contextOf = (body: string): Either.Either<EvaluationContext, RequestProblem> => {
  if (body.trim() === "") return Either.right({})
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch (error) {
    return Either.left({ errorCode: "PARSE_ERROR", errorDetails: `the request body is not JSON: ${(error as Error).message}` })
  }
  if (!isRecord(parsed)) {
    return Either.left({ errorCode: "INVALID_CONTEXT", errorDetails: 'the request body must be an object: {"context": {...}}' })
  }
  const raw = parsed.context
  if (raw === undefined || raw === null) return Either.right({})
  if (!isRecord(raw)) return Either.left({ errorCode: "INVALID_CONTEXT", errorDetails: "context must be an object" })
  if (raw.targetingKey !== undefined && typeof raw.targetingKey !== "string") {
    return Either.left({ errorCode: "INVALID_CONTEXT", errorDetails: "context.targetingKey must be a string" })
  }
  const context: Record<string, string | number | boolean> = {}
  for (const [field, value] of Object.entries(raw)) {
    if (typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value))) {
      context[field] = value
    }
  }
  return Either.right(context)
}

/** A strong validator of the exact bulk response body. */
export const etagOf = (body: string) => `"${createHash("sha1").update(body).digest("base64url")}"`

/** If-None-Match (RFC 9110 13.1.2): `*` or a list of tags, compared weakly. */
export const notModified = (ifNoneMatch: string | undefined, etag: string) => {
  if (ifNoneMatch === undefined) return false
  if (ifNoneMatch.trim() === "*") return true
  return ifNoneMatch.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag)
}
