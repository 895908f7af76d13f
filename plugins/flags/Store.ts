import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Option, Schema } from "effect"
import { Cache } from "../../core/Cache.ts"
import { FeatureGate, type FlagContext } from "../../core/FeatureGate.ts"
import { currentOrgId, inTenant } from "../../core/Tenancy.ts"
import { FlagKey, type EvaluationContext, type EvaluationResult, type FlagDefinition } from "./Domain.ts"
import { evaluate } from "./Evaluation.ts"
import { FlagsConfig } from "./Model.ts"
import { FlagsRepo, type RevisedDefinition } from "./Repo.ts"

export const isFlagKey = Schema.is(FlagKey)

/** Flags whose compiled form one instance keeps (see FlagStore's `reuse`). */
const MAX_SEEN = 10_000

/** Every cached definition of an organisation carries this tag; any change invalidates it. */
const orgTag = (orgId: string) => `flags:${orgId}`

/**
 * Flag definitions as evaluation reads them, through the core Cache: with Redis configured
 * the entries and their invalidation are shared by every instance, so a change made through
 * one instance is what the next evaluation on any other sees.
 */
export class FlagStore extends Effect.Service<FlagStore>()("flags/FlagStore", {
  effect: Effect.gen(function* () {
    const cache = yield* Cache
    const repo = yield* FlagsRepo
    const sql = yield* SqlClient.SqlClient
    const options = yield* FlagsConfig
    const ttl = Duration.seconds(options.cacheTtlSeconds)
    // Built only on a miss: constructing the query (its span captures a stack trace) costs more than a hit.
    const load = <A, E>(orgId: string, query: () => Effect.Effect<A, E, SqlClient.SqlClient>) =>
      Effect.suspend(() => inTenant(orgId, query())).pipe(Effect.provideService(SqlClient.SqlClient, sql))

    /**
     * The first copy seen of each flag revision. The cache hands out a fresh copy on every hit
     * (a JSON round trip), and the engine compiles a flag's constraints once per object, so
     * reusing one object per revision keeps compiling off the hot path. The revision comes from
     * the cache on every call, so this adds no staleness.
     */
    const seen = new Map<string, RevisedDefinition>()
    const reuse = (orgId: string, fresh: RevisedDefinition): FlagDefinition => {
      const id = `${orgId}:${fresh.definition.key}`
      const known = seen.get(id)
      if (known !== undefined && known.revision === fresh.revision) return known.definition
      if (seen.size >= MAX_SEEN) seen.delete(seen.keys().next().value!)
      seen.set(id, fresh)
      return fresh.definition
    }

    /** One live (not archived) flag, or null. `key` must be a valid flag key (it becomes part of a cache key). */
    const flag = (orgId: string, key: string) =>
      cache
        .get(`flags:${orgId}:flag:${key}`, load(orgId, () => repo.definition(key)), { ttl, tags: [orgTag(orgId)] })
        .pipe(Effect.map((fresh) => (fresh === null ? null : reuse(orgId, fresh))))

    /** Every live flag of the organisation, by key. */
    const all = (orgId: string) =>
      cache
        .get(`flags:${orgId}:all`, load(orgId, () => repo.definitions), { ttl, tags: [orgTag(orgId)] })
        .pipe(Effect.map((list) => list.map((fresh) => reuse(orgId, fresh))))

    /** Call after the change committed: a load started before the commit would cache the old definition. */
    const invalidate = (orgId: string) => cache.invalidateTags([orgTag(orgId)])

    return { flag, all, invalidate } as const
  })
}) {}

/** The environment named by the context, else the configured default. */
export const environmentOf = (context: Readonly<Record<string, unknown>>, fallback: string) =>
  typeof context.environment === "string" && context.environment !== "" ? context.environment : fallback

/**
 * Core's FeatureGate for the current tenant. Without a tenant, for an unknown or archived flag,
 * and when the definitions cannot be loaded, a flag reads as the caller's `whenUnknown`
 * (default off): code asking a gate must keep working when the flags cannot be read.
 */
export const layerFeatureGate = Layer.effect(
  FeatureGate,
  Effect.gen(function* () {
    const store = yield* FlagStore
    const options = yield* FlagsConfig
    const evaluateCurrent = (key: string, context: FlagContext = {}) =>
      Effect.gen(function* () {
        const orgId = yield* currentOrgId
        if (Option.isNone(orgId) || !isFlagKey(key)) return undefined
        const flag: FlagDefinition | null = yield* store.flag(orgId.value, key)
        if (flag === null) return undefined
        // The engine reads fields with typeof tests, so FlagContext's undefined values read as absent.
        const result: EvaluationResult = evaluate(flag, environmentOf(context, options.defaultEnvironment), context as EvaluationContext)
        return result
      }).pipe(
        Effect.catchAll((error) =>
          Effect.as(Effect.logWarning("feature flag definitions unavailable; the flag reads as off", error), undefined)
        )
      )
    return {
      isEnabled: (key, context, whenUnknown = false) =>
        Effect.map(evaluateCurrent(key, context), (result) => (result === undefined ? whenUnknown : result.enabled)),
      variant: (key, context) => Effect.map(evaluateCurrent(key, context), (result) => Option.fromNullable(result?.variant))
    }
  })
)
