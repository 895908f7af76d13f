import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { timingSafeEqual, createHash } from "node:crypto"
import { Forbidden, Unauthorized } from "./Errors.ts"
import { CurrentTenant } from "./Tenancy.ts"

export interface Actor {
  readonly kind: "operator" | "user" | "api_key"
  readonly id: string
  readonly orgId: Option.Option<string>
  readonly roles: ReadonlyArray<string>
  /** Granted permissions; `*` grants every permission. */
  readonly permissions: ReadonlyArray<string>
}

/** The authenticated caller of the current request. */
export class CurrentActor extends Context.Tag("trellis/CurrentActor")<CurrentActor, Actor>() {}

/**
 * Authenticates every plugin route: `X-API-Key` or `Authorization: Bearer`, both declared as
 * security schemes in the OpenAPI document.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("Authentication", {
  failure: Unauthorized,
  provides: CurrentActor,
  security: {
    apiKey: HttpApiSecurity.apiKey({ in: "header", key: "X-API-Key" }),
    bearer: HttpApiSecurity.bearer
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

/** Runs `effect` for the actor's organisation (tenant), when it has one. */
export const withActorTenant = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(CurrentActor, (actor) => Effect.provideService(effect, CurrentTenant, actor.orgId))

const digest = (value: string) => createHash("sha256").update(value).digest()

/** Compares secrets in constant time (hashing first makes the lengths equal). */
export const secretsEqual = (a: string, b: string) => timingSafeEqual(digest(a), digest(b))

const missing = new Unauthorized({ message: "missing or invalid credentials: send X-API-Key or Authorization: Bearer" })

/**
 * The operator credential: one API key with every permission. Bearer tokens carry the same
 * key. The identity plugin replaces this layer with users, orgs and API keys.
 */
export const layerOperatorKey = (key: Redacted.Redacted<string>) => {
  const operator: Actor = { kind: "operator", id: "operator", orgId: Option.none(), roles: ["operator"], permissions: ["*"] }
  const check = (presented: Redacted.Redacted<string>) => {
    const value = Redacted.value(presented)
    return value !== "" && secretsEqual(value, Redacted.value(key)) ? Effect.succeed(operator) : Effect.fail(missing)
  }
  return Layer.succeed(Authentication, { apiKey: check, bearer: check })
}
