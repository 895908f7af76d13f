import { Context, Effect, Option } from "effect"
import { ServiceUnavailable } from "./Errors.ts"

/** What a flag is evaluated against: a targeting key (user id) and any other fields. */
export interface FlagContext {
  readonly targetingKey?: string
  readonly [field: string]: string | number | boolean | undefined
}

export interface FlagVariant {
  readonly name: string
  readonly payload?: { readonly type: "string" | "number" | "json"; readonly value: string }
}

/**
 * Feature flags for code: the flags plugin implements it, other plugins ask it, so no plugin
 * imports another. Evaluates for the current tenant.
 */
export class FeatureGate extends Context.Tag("trellis/FeatureGate")<
  FeatureGate,
  {
    /** `whenUnknown` answers for a flag the tenant has not defined (or cannot be read). */
    readonly isEnabled: (key: string, context?: FlagContext, whenUnknown?: boolean) => Effect.Effect<boolean>
    readonly variant: (key: string, context?: FlagContext) => Effect.Effect<Option.Option<FlagVariant>>
  }
>() {}

/**
 * A route guard (kill switch): fails with 503 naming the flag when it is off for the current
 * tenant. A flag nobody defined, no tenant, or no FeatureGate (the flags plugin disabled)
 * leaves the route on: a kill switch only ever switches off.
 */
export const requireFlag = (key: string, context?: FlagContext) =>
  Effect.flatMap(Effect.serviceOption(FeatureGate), (gate) =>
    Option.match(gate, {
      onNone: () => Effect.void,
      onSome: (g) =>
        Effect.flatMap(g.isEnabled(key, context, true), (enabled) =>
          enabled ? Effect.void : Effect.fail(new ServiceUnavailable({ message: `disabled by feature flag ${key}`, flag: key }))
        )
    })
  )
