import { Effect, Layer, Option } from "effect"
import { timingSafeEqual } from "node:crypto"
import { CredentialVerifier, permissionsForRole, type Actor } from "../../core/Auth.ts"
import { PluginRegistry } from "../../core/Registry.ts"
import { PlatformRepo } from "./Repo.ts"
import { hashSecret, parseApiKey, Tokens } from "./Tokens.ts"

const TOUCH_INTERVAL_MS = 60_000

/**
 * Users' access tokens and organisations' API keys, checked against the database on every
 * request (no cache): a removed membership or a revoked key is refused on its next request.
 * Each check is one primary-key lookup.
 */
export const layerVerifier = Layer.effect(
  CredentialVerifier,
  Effect.gen(function* () {
    const repo = yield* PlatformRepo
    const tokens = yield* Tokens
    const registry = yield* PluginRegistry
    const registered = registry.permissions.map((p) => p.item.name)

    const apiKey = (value: string): Effect.Effect<Option.Option<Actor>> =>
      Effect.gen(function* () {
        const parsed = parseApiKey(value)
        if (Option.isNone(parsed)) return Option.none()
        const { id, secret } = parsed.value
        const key = yield* repo.apiKeyForVerification(id)
        if (Option.isNone(key) || !timingSafeEqual(hashSecret(secret), key.value.secret_hash)) return Option.none()
        const lastUsed = key.value.last_used_at
        if (lastUsed === null || Date.now() - lastUsed.getTime() > TOUCH_INTERVAL_MS) yield* repo.touchApiKey(id)
        return Option.some<Actor>({
          kind: "api_key",
          id,
          orgId: Option.some(key.value.org_id),
          roles: [],
          permissions: key.value.permissions
        })
      }).pipe(Effect.orDie, Effect.withSpan("identity.verifyApiKey"))

    /** The role comes from the membership as it is now, so a demotion applies at once. */
    const bearer = (token: string): Effect.Effect<Option.Option<Actor>> =>
      token.startsWith("trl_")
        ? apiKey(token)
        : Effect.gen(function* () {
            const claims = yield* tokens.verifyAccessToken(token)
            if (Option.isNone(claims)) return Option.none()
            const { userId, orgId } = claims.value
            const role = yield* repo.membershipRole(orgId, userId)
            return Option.map(
              role,
              (role): Actor => ({
                kind: "user",
                id: userId,
                orgId: Option.some(orgId),
                roles: [role],
                permissions: permissionsForRole(role, registered)
              })
            )
          }).pipe(Effect.orDie, Effect.withSpan("identity.verifyBearer"))

    return { apiKey, bearer }
  })
)
