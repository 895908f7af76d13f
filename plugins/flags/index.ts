import { Layer } from "effect"
import { definePlugin } from "../../core/Plugin.ts"
import { FlagsAdmin } from "./Admin.ts"
import { FlagsApi } from "./Api.ts"
import { FlagsHttpLive } from "./Http.ts"
import { FlagsConfig, FlagsOptions } from "./Model.ts"
import { FlagsRepo } from "./Repo.ts"
import { FlagStore, layerFeatureGate } from "./Store.ts"
import { FlagStale, makeTasks } from "./Tasks.ts"

/**
 * Feature flags per organisation and environment with Unleash's strategies, an admin API with
 * an audit trail, import and export, OpenFeature remote evaluation (OFREP), core's FeatureGate
 * for other plugins' code, and a daily report of flags past their expected lifetime.
 */
export const flags = {
  name: "flags",
  options: FlagsOptions,
  make: (options: FlagsOptions) => {
    const { stale, cron } = makeTasks(options)
    const store = FlagStore.Default.pipe(Layer.provideMerge(FlagsRepo.Default))
    const layer = Layer.mergeAll(FlagsAdmin.Default, layerFeatureGate).pipe(
      Layer.provideMerge(store),
      Layer.provideMerge(Layer.succeed(FlagsConfig, options))
    )
    return definePlugin({
      name: "flags",
      description: "Feature flags, OFREP evaluation and the FeatureGate",
      api: FlagsApi,
      http: FlagsHttpLive,
      tasks: [stale],
      cron,
      events: { publishes: [FlagStale] },
      layer,
      permissions: [
        { name: "flags:read", description: "Read flag definitions, their audit trail and exports; evaluate flags" },
        { name: "flags:admin", description: "Create, change, archive, delete and import flags and environments" },
        { name: "flags:evaluate", description: "Evaluate flags (OFREP) without reading their definitions" }
      ]
    })
  }
} as const
