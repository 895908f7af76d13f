import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { defineEvent } from "../../core/Events.ts"
import { defineTask } from "../../core/Jobs.ts"
import { definePlugin } from "../../core/Plugin.ts"
import { buildRegistry } from "../../core/Registry.ts"

const task = (id: string) => defineTask({ id, payload: Schema.Struct({}), handler: () => Effect.void })

describe("plugin registration", () => {
  it("names both owners of a clashing task id, cron id, event type or permission", () => {
    const shared = task("alpha.work")
    const alpha = definePlugin({
      name: "alpha",
      tasks: [shared],
      cron: [{ id: "alpha.nightly", schedule: "0 0 * * *", task: shared }],
      events: { publishes: [defineEvent("alpha.happened", Schema.Struct({}))] },
      permissions: [{ name: "alpha:read", description: "read" }]
    })
    const beta = definePlugin({ name: "beta", tasks: [task("beta.work")] })
    expect(() => buildRegistry([alpha, beta, alpha])).toThrow("plugin alpha is registered by both alpha and alpha")
    expect(() => buildRegistry([alpha, beta, alpha])).toThrow("task alpha.work is registered by both alpha and alpha")
    expect(() => buildRegistry([alpha, beta, alpha])).toThrow("cron item alpha.nightly is registered by both alpha and alpha")
    expect(() => buildRegistry([alpha, beta, alpha])).toThrow("event type alpha.happened is registered by both alpha and alpha")
    expect(() => buildRegistry([alpha, beta, alpha])).toThrow("permission alpha:read is registered by both alpha and alpha")
    const registry = buildRegistry([alpha, beta])
    expect(registry.tasks.map((t) => `${t.plugin}/${t.item.id}`)).toEqual(["alpha/alpha.work", "beta/beta.work"])
  })

  it("refuses ids outside the plugin's namespace, unknown dependencies and cycles", () => {
    const stray = definePlugin({ name: "gamma", tasks: [task("delta.work")] })
    expect(() => buildRegistry([stray])).toThrow('task delta.work of plugin gamma must start with "gamma."')
    const needy = definePlugin({ name: "needy", dependsOn: ["absent"] })
    expect(() => buildRegistry([needy])).toThrow("plugin needy depends on absent, which is not enabled")
    const a = definePlugin({ name: "a", dependsOn: ["b"] })
    const b = definePlugin({ name: "b", dependsOn: ["a"] })
    expect(() => buildRegistry([a, b])).toThrow("plugin dependency cycle")
    const first = definePlugin({ name: "first" })
    const second = definePlugin({ name: "second", dependsOn: ["first"] })
    expect(buildRegistry([second, first]).plugins.map((p) => p.name)).toEqual(["first", "second"])
  })

  it("refuses a plugin name that is not a schema-safe identifier", () => {
    expect(() => definePlugin({ name: "Bad-Name" })).toThrow("must match")
  })
})
