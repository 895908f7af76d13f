import { Effect, type Schema } from "effect"
import type { Plugin } from "../core/Plugin.ts"
import { flags } from "../plugins/flags/index.ts"
import { identity } from "../plugins/identity/index.ts"
import { inventory } from "../plugins/inventory/index.ts"
import { ops } from "../plugins/ops/index.ts"
import { orders } from "../plugins/orders/index.ts"
import { webhooks } from "../plugins/webhooks/index.ts"
import { decodePluginOptions } from "./Config.ts"

/** A plugin package: its name, its options Schema and how to make it from options. */
interface PluginModule<O> {
  readonly name: string
  readonly options: Schema.Schema<O, any>
  readonly make: (options: O) => Plugin<unknown>
}

/**
 * Every plugin this build ships. The only place that lists plugins; effect.config.ts
 * chooses which of them are enabled and with what options.
 */
// `any` for the options type: each module's options are checked against its own Schema.
export const catalog: ReadonlyArray<PluginModule<any>> = [ops, identity, webhooks, flags, inventory, orders]

/** Makes the plugins enabled in the config, in the config's order. */
export const enablePlugins = (enabled: Readonly<Record<string, unknown>>) =>
  Effect.forEach(Object.entries(enabled), ([name, raw]) => {
    const module = catalog.find((m) => m.name === name)
    if (!module) {
      return Effect.fail(
        new Error(`effect.config.ts enables unknown plugin ${name}; known plugins: ${catalog.map((m) => m.name).join(", ")}`)
      )
    }
    return Effect.map(decodePluginOptions(name, module.options, raw), (options) => module.make(options))
  })
