import { HttpApiMiddleware, HttpApiSecurity, HttpServerRequest, OpenApi } from "@effect/platform"
import { Context, Effect, FiberRef, Layer, Option, Redacted, Schema } from "effect"
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
  // A candidate of another length is not the secret: skipping the hash for it (every user
  // token and API key when the secret is the operator key) tells a caller only the length.
  return (candidate: string) => candidate.length === secret.length && timingSafeEqual(digest(candidate), expected)
}

export interface RateLimits {
  /** Per authenticated caller (API key, user or operator). */
  readonly authenticated: RateLimit
  /** Per caller for one plugin's routes, overriding `authenticated`. */
  readonly plugins: Readonly<Record<string, RateLimit>>
}

type AuthenticationFailure = Unauthorized | TooManyRequests | ServiceUnavailable

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
      /** Counts the caller against its rate limit (per plugin when the plugin has its own). */
      const admit = (request: HttpServerRequest.HttpServerRequest, actor: Actor) => {
        const plugin = pluginOf(request.url)
        const limit = (plugin && options.rateLimits.plugins[plugin]) || options.rateLimits.authenticated
        return Effect.as(enforceRateLimitWith(limiter, `${actor.kind}:${actor.id}:${plugin ?? ""}`, limit), actor)
      }
      const authenticateRequest = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Actor, AuthenticationFailure> => {
        const apiKey = request.headers["x-api-key"] ?? ""
        const authorization = request.headers["authorization"] ?? ""
        const bearer = authorization.toLowerCase().startsWith("bearer ") ? authorization.slice(7).trim() : ""
        const [kind, value] = apiKey !== "" ? (["apiKey", apiKey] as const) : (["bearer", bearer] as const)
        if (value === "") return Effect.fail(missing)
        if (isOperatorKey(value)) return admit(request, operator)
        if (Option.isNone(verifier)) return Effect.fail(missing)
        return Effect.flatMap(verifier.value[kind](value), (actor): Effect.Effect<Actor, AuthenticationFailure> =>
          Option.isSome(actor) ? admit(request, actor.value) : Effect.fail(missing)
        )
      }
      // HttpApi tries each security scheme in turn and reports the last one's failure. Both
      // schemes run this one check: the first scheme's failure is kept in the request's fiber
      // and is the second scheme's answer, so a 429 is not turned into a 401 and the caller is
      // counted once. The success path costs one fiber-ref read.
      const failed = FiberRef.unsafeMake<AuthenticationFailure | undefined>(undefined)
      const authenticate = () =>
        Effect.flatMap(FiberRef.get(failed), (previous) =>
          previous !== undefined
            ? Effect.fail(previous)
            : Effect.flatMap(HttpServerRequest.HttpServerRequest, authenticateRequest).pipe(
                Effect.tapError((failure) => FiberRef.set(failed, failure))
              )
        )
      return { apiKey: authenticate, bearer: authenticate }
    })
  )
