import { Effect, Schema } from "effect"
import { defineTask } from "../../core/Jobs.ts"
import type { CronItem } from "../../core/Plugin.ts"
import type { IdentityOptions } from "./Domain.ts"
import { PlatformRepo } from "./Repo.ts"

export const makeTasks = (options: IdentityOptions) => {
  const prune = defineTask({
    id: "identity.prune",
    payload: Schema.Struct({}),
    retry: { maxAttempts: 5 },
    handler: () =>
      Effect.gen(function* () {
        const repo = yield* PlatformRepo
        const removed = yield* repo.prune(options.lockoutMinutes)
        yield* Effect.logInfo("pruned expired sessions and lockout counters").pipe(Effect.annotateLogs(removed))
      })
  })
  const cron: ReadonlyArray<CronItem> = [{ id: "identity.prune", schedule: options.pruneSchedule, task: prune, payload: {} }]
  return { prune, cron }
}
