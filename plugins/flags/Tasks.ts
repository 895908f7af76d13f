import { Effect, Schema } from "effect"
import { defineEvent, publish } from "../../core/Events.ts"
import { defineTask } from "../../core/Jobs.ts"
import type { CronItem } from "../../core/Plugin.ts"
import { inTenant } from "../../core/Tenancy.ts"
import { FlagKey, FlagType } from "./Domain.ts"
import type { FlagsOptions } from "./Model.ts"
import { FlagsRepo, type Lifetimes } from "./Repo.ts"

/** A flag outlived its type's expected lifetime: time to remove it from the code and archive it. */
export const FlagStale = defineEvent(
  "flags.stale",
  Schema.Struct({
    key: FlagKey,
    type: FlagType,
    createdAt: Schema.DateFromString,
    ageDays: Schema.Int,
    lifetimeDays: Schema.Int
  })
)

/**
 * Unleash's expected lifetimes. Kill switches and permission flags are meant to stay, so they
 * never go stale.
 */
const LIFETIMES: Lifetimes = [
  { type: "release", days: 40 },
  { type: "experiment", days: 40 },
  { type: "operational", days: 7 }
]

export const makeTasks = (options: FlagsOptions) => {
  /**
   * Finds every organisation's flags past their lifetime in one platform statement, then per
   * organisation, in its tenant transaction, marks them reported and publishes one
   * `flags.stale` event each. A flag is reported once; a retry or a concurrent run skips it.
   */
  const stale = defineTask({
    id: "flags.stale",
    payload: Schema.Struct({}),
    retry: { maxAttempts: 5 },
    handler: () =>
      Effect.gen(function* () {
        const repo = yield* FlagsRepo
        const candidates = yield* repo.staleCandidates(LIFETIMES)
        const byOrg = new Map<string, Array<string>>()
        for (const { org_id, key } of candidates) byOrg.set(org_id, [...(byOrg.get(org_id) ?? []), key])
        let published = 0
        for (const [orgId, keys] of byOrg) {
          published += yield* inTenant(
            orgId,
            Effect.gen(function* () {
              const marked = yield* repo.markStale(keys, LIFETIMES)
              for (const flag of marked) {
                yield* publish(FlagStale, {
                  key: FlagKey.make(flag.key),
                  type: flag.type,
                  createdAt: flag.created_at,
                  ageDays: flag.age_days,
                  lifetimeDays: flag.lifetime_days
                })
              }
              return marked.length
            })
          )
        }
        yield* Effect.logInfo("reported stale flags").pipe(Effect.annotateLogs({ organisations: byOrg.size, flags: published }))
      })
  })
  const cron: ReadonlyArray<CronItem> = [{ id: "flags.stale", schedule: options.staleSchedule, task: stale, payload: {} }]
  return { stale, cron }
}
