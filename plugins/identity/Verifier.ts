import { Duration, Effect, Layer, Option } from "effect"
import { timingSafeEqual } from "node:crypto"
import { CredentialVerifier, permissionsForRole, ROLES, type Actor } from "../../core/Auth.ts"
import { Cache } from "../../core/Cache.ts"
import { ServiceUnavailable } from "../../core/Errors.ts"
import type { SqlError } from "@effect/sql/SqlError"
import { PluginRegistry } from "../../core/Registry.ts"
import { Options } from "./Domain.ts"
import { PlatformRepo } from "./Repo.ts"
import { hashSecret, parseApiKey, Tokens } from "./Tokens.ts"
import { traced } from "../../core/Tracing.ts"

const TOUCH_INTERVAL_MS = 60_000
/** Keys whose last touch this process remembers; beyond it, the oldest are forgotten (a forgotten key is touched again, harmlessly). */
const MAX_TOUCHED = 10_000

/** Cache keys, each its own invalidation tag. */
export const apiKeyCacheKey = (id: string) => `identity:api-key:${id}`
export const membershipCacheKey = (orgId: string, userId: string) => `identity:membership:${orgId}:${userId}`

/** An API key as verification needs it, JSON-safe for the cache. */
interface CachedApiKey {
  readonly orgId: string
  readonly permissions: ReadonlyArray<string>
  readonly secretHash: string
  readonly expiresAt: number | null
  readonly lastUsedAt: number | null
}

/** The database cannot be asked: the caller may retry, and is not told its credential is bad. */
const unavailable = (error: SqlError) =>
  Effect.zipRight(
    Effect.logWarning("credential check failed: database unavailable", error.message),
    Effect.fail(new ServiceUnavailable({ message: "credentials cannot be checked right now; retry shortly" }))
  )

/**
 * Users' access tokens and organisations' API keys. What the database says about a key or a
 * membership is kept in the core Cache for `credentialCacheSeconds`; revoking a key and
 * changing or removing a membership invalidate the entry after their transaction commits
 * (identity's Admin service), so a revoked key or a removed member is refused on
 * the next request, on every instance sharing the cache.
 */
export const layerVerifier = Layer.effect(
  CredentialVerifier,
  Effect.gen(function* () {
    const repo = yield* PlatformRepo
    const tokens = yield* Tokens
    const cache = yield* Cache
    const options = yield* Options
    const registry = yield* PluginRegistry
    const registered = registry.permissions.map((p) => p.item.name)
    // Fixed for the process: worked out once per role, not per request.
    const permissionsOf = new Map(ROLES.map((role) => [role, permissionsForRole(role, registered)]))
    const ttl = Duration.seconds(options.credentialCacheSeconds)
    // `load` is built only on a miss: building the SQL statement and its span per request
    // cost more than the cache hit.
    const cached = <A, E>(key: string, load: () => Effect.Effect<A, E>) =>
      options.credentialCacheSeconds === 0 ? load() : cache.get(key, Effect.suspend(load), { ttl, tags: [key] })

    const loadApiKey = (id: string) =>
      repo.apiKeyForVerification(id).pipe(
        Effect.map(
          Option.match({
            onNone: (): CachedApiKey | null => null,
            onSome: (row): CachedApiKey => ({
              orgId: row.org_id,
              permissions: row.permissions,
              secretHash: row.secret_hash.toString("hex"),
              expiresAt: row.expires_at === null ? null : row.expires_at.getTime(),
              lastUsedAt: row.last_used_at === null ? null : row.last_used_at.getTime()
            })
          })
        )
      )

    // A cached key's last_used_at is as old as the entry, so this process also remembers its own touches.
    const touched = new Map<string, number>()
    const touch = (id: string, lastUsedAt: number | null) => {
      const now = Date.now()
      const last = Math.max(lastUsedAt ?? 0, options.credentialCacheSeconds === 0 ? 0 : (touched.get(id) ?? 0))
      if (now - last <= TOUCH_INTERVAL_MS) return Effect.void
      touched.delete(id)
      if (touched.size >= MAX_TOUCHED) touched.delete(touched.keys().next().value!)
      touched.set(id, now)
      return repo.touchApiKey(id)
    }

    const apiKey = (value: string): Effect.Effect<Option.Option<Actor>, ServiceUnavailable> =>
      Effect.gen(function* () {
        const parsed = parseApiKey(value)
        if (Option.isNone(parsed)) return Option.none()
        const { id, secret } = parsed.value
        const key = yield* cached(apiKeyCacheKey(id), () => loadApiKey(id))
        if (key === null || (key.expiresAt !== null && key.expiresAt <= Date.now())) return Option.none()
        if (!timingSafeEqual(hashSecret(secret), Buffer.from(key.secretHash, "hex"))) return Option.none()
        yield* touch(id, key.lastUsedAt)
        return Option.some<Actor>({
          kind: "api_key",
          id,
          orgId: Option.some(key.orgId),
          roles: [],
          permissions: key.permissions
        })
      }).pipe(Effect.catchTag("SqlError", unavailable), traced("identity.verifyApiKey"))

    /** The role comes from the membership (cached, invalidated when it changes), so a demotion applies at once. */
    const bearer = (token: string): Effect.Effect<Option.Option<Actor>, ServiceUnavailable> =>
      token.startsWith("trl_")
        ? apiKey(token)
        : Effect.gen(function* () {
            const claims = yield* tokens.verifyAccessToken(token)
            if (Option.isNone(claims)) return Option.none()
            const { userId, orgId } = claims.value
            const role = yield* cached(
              membershipCacheKey(orgId, userId),
              () => repo.membershipRole(orgId, userId).pipe(Effect.map(Option.getOrNull))
            )
            if (role === null) return Option.none()
            return Option.some<Actor>({
              kind: "user",
              id: userId,
              orgId: Option.some(orgId),
              roles: [role],
              permissions: permissionsOf.get(role) ?? []
            })
          }).pipe(Effect.catchTag("SqlError", unavailable), traced("identity.verifyBearer"))

    return { apiKey, bearer }
  })
)
