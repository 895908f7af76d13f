import { definePlugin } from "../../core/Plugin.ts"
import { OpsApi } from "./Api.ts"
import { OpsOptions } from "./Domain.ts"
import { OpsHttp } from "./Http.ts"
import { OpsRepo } from "./Repo.ts"
import { makeTasks } from "./Tasks.ts"

/**
 * Operator routes over the job engine: dead letters (list, retry, discard), queue
 * statistics and the registered tasks and cron items; a cron task prunes old dead letters
 * and outbox events.
 */
export const ops = {
  name: "ops",
  options: OpsOptions,
  make: (options: OpsOptions) => {
    const { prune, cron } = makeTasks(options)
    return definePlugin({
      name: "ops",
      description: "Operator view of the job engine",
      api: OpsApi,
      http: OpsHttp,
      tasks: [prune],
      cron,
      layer: OpsRepo.Default,
      permissions: [
        { name: "ops:read", description: "Read queue statistics, dead letters and registrations" },
        { name: "ops:write", description: "Retry and discard dead letters" }
      ]
    })
  }
} as const
