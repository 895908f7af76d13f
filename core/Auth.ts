import { HttpApiMiddleware, HttpApiSecurity, HttpServerRequest, OpenApi } from "@effect/platform"
import { Context, Effect, Exit, Layer, Option, Redacted, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { Forbidden, ServiceUnavailable, TooManyRequests, Unauthorized } from "./Errors.ts"
import { enforceRateLimitWith, RateLimiter, type RateLimit } from "./RateLimit.ts"
import { CurrentActor, type Actor } from "./Actor.ts"

export { CurrentActor, type Actor } from "./Actor.ts"

/**
 * Turns a presented credential into an actor. The identity plugin implements it (users'
 * bearer tokens, organisations' API keys); without it only the operator key works.
 */
export class CredentialVerifier extends Context.Tag("trellis/CredentialVerifier")<
  CredentialVerifier,
  {
    /** Fails with ServiceUnavailable (503) when the credential cannot be checked now (its store is down). */
    readonly apiKey: (key: string) => Effect.Effect<Option.Option<Actor>, ServiceUnavailable>
    readonly bearer: (token: string) => Effect.Effect<Option.Option<Actor>, ServiceUnavailable>
  }
>() {}

/**
 * Authenticates every plugin route: `X-API-Key` or `Authorization: Bearer`, both declared as
 * security schemes in the OpenAPI document. An authenticated caller is then rate limited.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("Authentication", {
  failure: Schema.Union(Unauthorized, TooManyRequests, ServiceUnavailable),
  provides: CurrentActor,
  // Bearer first: HttpApi decodes the API-key scheme with a header Schema, which builds a
  // ParseError (a stack capture) on every request without the header; the bearer scheme is
  // a plain header read. Both run the same shared check (see layerAuthentication), so the
  // second scheme is only tried after the first one's failure.
  security: {
    bearer: HttpApiSecurity.bearer,
    apiKey: HttpApiSecurity.apiKey({ in: "header", key: "X-API-Key" })
  }
}) {}

export const hasPermission = (actor: Actor, permission: string) =>
  actor.permissions.includes("*") || actor.permissions.includes(permission)

/** Fails with 403 naming the permission unless the current actor holds it. */
export const requirePermission = (permission: string) =>
  Effect.flatMap(CurrentActor, (actor) =>
    hasPermission(actor, permission)
      ? Effect.void
      : Effect.fail(new Forbidden({ message: `missing permission ${permission}`, permission }))
  )

/**
 * Documents the permission an endpoint needs as `x-required-permission` on its OpenAPI
 * operation (`none` for public routes): `endpoint.annotateContext(permissionAnnotation("x:read"))`.
 */
export const permissionAnnotation = (permission: string) =>
  OpenApi.annotations({ override: { "x-required-permission": permission } })

export const ROLES = ["owner", "admin", "staff", "viewer"] as const
export type Role = (typeof ROLES)[number]

/**
 * The one place roles map to permissions. Plugins name permissions `<plugin>:<action>`:
 * viewers get every `:read`, staff add every `:write`, admins get everything but the
 * owner-only `identity:owner`, owners everything.
 */
export const permissionsForRole = (role: Role, registered: ReadonlyArray<string>): ReadonlyArray<string> => {
  switch (role) {
    case "owner":
      return ["*"]
    case "admin":
      return registered.filter((p) => p !== "identity:owner")
    case "staff":
      return registered.filter((p) => p.endsWith(":read") || p.endsWith(":write"))
    case "viewer":
      return registered.filter((p) => p.endsWith(":read"))
  }
}

const digest = (value: string) => createHash("sha256").update(value).digest()

/**
 * Compares candidates with a secret in constant time (hashing first makes the lengths
 * equal); the secret's digest is taken once.
 */
export const secretMatcher = (secret: string) => {
  const expected = digest(secret)
  return (candidate: string) => timingSafeEqual(digest(candidate), expected)
}

export interface RateLimits {
  /** Per authenticated caller (API key, user or operator). */
  readonly authenticated: RateLimit
  /** Per caller for one plugin's routes, overriding `authenticated`. */
  readonly plugins: Readonly<Record<string, RateLimit>>
}

const missing = new Unauthorized({ message: "missing or invalid credentials: send X-API-Key or Authorization: Bearer" })


/**
 * The Authentication middleware: the operator key (when configured) and whatever the
 * `CredentialVerifier` accepts; then the caller's rate limit.
 */
export const layerAuthentication = (options: {
  readonly operatorKey: Option.Option<Redacted.Redacted<string>>
  readonly rateLimits: RateLimits
  /** Route prefix -> owning plugin, so a plugin's limit applies to all its routes (OFREP's too). */
  readonly routePrefixes: ReadonlyMap<string, string>
}) =>
  Layer.effect(
    Authentication,
    Effect.gen(function* () {
      const verifier = yield* Effect.serviceOption(CredentialVerifier)
      const prefixes = [...options.routePrefixes]
      const pluginOf = (url: string) => {
        for (const [prefix, plugin] of prefixes) {
          if (url.startsWith(prefix) && (url.length === prefix.length || "/?".includes(url[prefix.length]!))) return plugin
        }
        return undefined
      }
      const limiter = yield* RateLimiter
      const operator: Actor = {
        kind: "operator",
        id: "operator",
        orgId: Option.none(),
        roles: ["operator"],
        permissions: ["*"]
      }
      const isOperatorKey = Option.match(options.operatorKey, {
        onNone: () => (_: string) => false,
        onSome: (key) => secretMatcher(Redacted.value(key))
      })
      const authenticateRequest = (request: HttpServerRequest.HttpServerRequest) =>
        Effect.gen(function* () {
          const apiKey = request.headers["x-api-key"] ?? ""
          const authorization = request.headers["authorization"] ?? ""
          const bearer = authorization.toLowerCase().startsWith("bearer ") ? authorization.slice(7).trim() : ""
          const [kind, value] = apiKey !== "" ? (["apiKey", apiKey] as const) : (["bearer", bearer] as const)
          if (value === "") return yield* Effect.fail(missing)
          let actor: Option.Option<Actor> = Option.none()
          if (isOperatorKey(value)) {
            actor = Option.some(operator)
          } else if (Option.isSome(verifier)) {
            actor = yield* verifier.value[kind](value)
          }
          if (Option.isNone(actor)) return yield* Effect.fail(missing)
          const plugin = pluginOf(request.url)
          const limit = (plugin && options.rateLimits.plugins[plugin]) || options.rateLimits.authenticated
          yield* enforceRateLimitWith(limiter, `${actor.value.kind}:${actor.value.id}:${plugin ?? ""}`, limit)
          return actor.value
        })
      // HttpApi tries each security scheme in turn and reports the last one's failure. Both
      // schemes share one outcome per request, so a 429 found by the first is not turned into
      // the second's 401, and the caller is counted once.
      const outcomes = new WeakMap<object, Exit.Exit<Actor, Unauthorized | TooManyRequests | ServiceUnavailable>>()
      const authenticate = () =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          // The platform's raw request object: one per request, shared by both attempts.
          const source = request.source as object
          let outcome = outcomes.get(source)
          if (outcome === undefined) {
            outcome = yield* Effect.exit(authenticateRequest(request))
            outcomes.set(source, outcome)
          }
          return yield* outcome
        })
      return { apiKey: authenticate, bearer: authenticate }
    })
  )
