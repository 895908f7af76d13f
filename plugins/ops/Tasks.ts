import { Effect, Schema } from "effect"
import { defineTask } from "../../core/Jobs.ts"
import type { CronItem } from "../../core/Plugin.ts"
import type { OpsOptions } from "./Domain.ts"
import { OpsRepo } from "./Repo.ts"

export const makeTasks = (options: OpsOptions) => {
  const prune = defineTask({
    id: "ops.prune",
    payload: Schema.Struct({}),
    retry: { maxAttempts: 5 },
    handler: () =>
      Effect.gen(function* () {
        const repo = yield* OpsRepo
        const removed = yield* repo.prune(options.retentionDays)
        yield* Effect.logInfo("pruned dead letters and outbox events").pipe(
          Effect.annotateLogs({ retentionDays: options.retentionDays, ...removed })
        )
      })
  })
  const cron: ReadonlyArray<CronItem> = [{ id: "ops.prune", schedule: options.pruneSchedule, task: prune, payload: {} }]
  return { prune, cron }
}
