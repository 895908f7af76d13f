import { HttpApi } from "@effect/platform"
import { Context, Schema } from "effect"
import type { EventType, Subscription } from "./Events.ts"
import type { Task } from "./Jobs.ts"
import type { CronItem, Permission, Plugin } from "./Plugin.ts"

export class RegistrationError extends Schema.TaggedError<RegistrationError>()("RegistrationError", {
  message: Schema.String
}) {}

export interface Registered<A> {
  readonly plugin: string
  readonly item: A
}

/** Everything the enabled plugins contribute, checked for clashes. */
export interface Registry {
  readonly plugins: ReadonlyArray<Plugin<unknown>>
  readonly tasks: ReadonlyArray<Registered<Task>>
  readonly cron: ReadonlyArray<Registered<CronItem>>
  readonly eventTypes: ReadonlyMap<string, EventType>
  readonly subscriptions: ReadonlyArray<Subscription>
  readonly permissions: ReadonlyArray<Registered<Permission>>
  /** Route prefixes (`/api/v1/orders`, `/ofrep/v1`) and the plugin that owns each. */
  readonly routePrefixes: ReadonlyMap<string, string>
}

export class PluginRegistry extends Context.Tag("trellis/PluginRegistry")<PluginRegistry, Registry>() {}

const RESERVED = new Set(["core", "graphile_worker", "public", "pg_catalog", "information_schema"])

/**
 * Collects the plugins' tasks, cron items, events and permissions. Two plugins claiming the
 * same name, task id, cron id, route prefix, event type or permission fail with a message
 * naming both owners; ids outside the plugin's own namespace fail too.
 */
export const buildRegistry = (plugins: ReadonlyArray<Plugin<unknown>>): Registry => {
  const problems: Array<string> = []
  const claim = (kind: string, owners: Map<string, string>, id: string, plugin: string) => {
    const owner = owners.get(id)
    if (owner !== undefined) problems.push(`${kind} ${id} is registered by both ${owner} and ${plugin}`)
    else owners.set(id, plugin)
  }
  const names = new Map<string, string>()
  const taskOwners = new Map<string, string>()
  const cronOwners = new Map<string, string>()
  const eventOwners = new Map<string, string>()
  const prefixOwners = new Map<string, string>()
  const permissionOwners = new Map<string, string>()
  const tasks: Array<Registered<Task>> = []
  const cron: Array<Registered<CronItem>> = []
  const eventTypes = new Map<string, EventType>()
  const subscriptions: Array<Subscription> = []
  const permissions: Array<Registered<Permission>> = []
  const inNamespace = (plugin: string, id: string, kind: string, separator: string) => {
    if (!id.startsWith(`${plugin}${separator}`)) {
      problems.push(`${kind} ${id} of plugin ${plugin} must start with "${plugin}${separator}"`)
    }
  }

  for (const plugin of plugins) {
    if (RESERVED.has(plugin.name)) problems.push(`plugin name ${plugin.name} is reserved`)
    claim("plugin", names, plugin.name, plugin.name)
    if (plugin.http) {
      const owner = plugin.name
      HttpApi.reflect(plugin.http.api, {
        onGroup: () => {},
        onEndpoint: ({ endpoint }) => {
          // `/api/v1/<plugin>` for most routes; a standard's own path (`/ofrep/v1`) otherwise.
          const prefix = endpoint.path.split("/").slice(0, endpoint.path.startsWith("/api/") ? 4 : 3).join("/")
          const existing = prefixOwners.get(prefix)
          if (existing !== undefined && existing !== owner) {
            problems.push(`route prefix ${prefix} is registered by both ${existing} and ${owner}`)
          } else prefixOwners.set(prefix, owner)
        }
      })
    }
    const ownTasks = [...plugin.tasks, ...plugin.events.subscribes.map((s) => s.task)]
    for (const task of ownTasks) {
      inNamespace(plugin.name, task.id, "task", ".")
      claim("task", taskOwners, task.id, plugin.name)
      tasks.push({ plugin: plugin.name, item: task })
    }
    for (const item of plugin.cron) {
      inNamespace(plugin.name, item.id, "cron item", ".")
      claim("cron item", cronOwners, item.id, plugin.name)
      if (!ownTasks.includes(item.task)) {
        problems.push(`cron item ${item.id} of plugin ${plugin.name} runs task ${item.task.id}, which the plugin does not register`)
      }
      cron.push({ plugin: plugin.name, item })
    }
    for (const event of plugin.events.publishes) {
      inNamespace(plugin.name, event.type, "event type", ".")
      claim("event type", eventOwners, event.type, plugin.name)
      eventTypes.set(event.type, event)
    }
    subscriptions.push(...plugin.events.subscribes)
    for (const permission of plugin.permissions) {
      inNamespace(plugin.name, permission.name, "permission", ":")
      claim("permission", permissionOwners, permission.name, plugin.name)
      permissions.push({ plugin: plugin.name, item: permission })
    }
  }
  for (const plugin of plugins) {
    for (const dependency of plugin.dependsOn) {
      if (!names.has(dependency)) problems.push(`plugin ${plugin.name} depends on ${dependency}, which is not enabled`)
    }
  }
  if (problems.length > 0) {
    throw new RegistrationError({ message: `plugin registration failed:\n- ${problems.join("\n- ")}` })
  }
  return {
    plugins: orderByDependencies(plugins),
    tasks,
    cron,
    eventTypes,
    subscriptions,
    permissions,
    routePrefixes: prefixOwners
  }
}

/** Dependencies first (their migrations run first); a cycle is a registration error. */
const orderByDependencies = (plugins: ReadonlyArray<Plugin<unknown>>) => {
  const byName = new Map(plugins.map((p) => [p.name, p]))
  const ordered: Array<Plugin<unknown>> = []
  const state = new Map<string, "visiting" | "done">()
  const visit = (plugin: Plugin<unknown>, path: ReadonlyArray<string>) => {
    const current = state.get(plugin.name)
    if (current === "done") return
    if (current === "visiting") {
      throw new RegistrationError({ message: `plugin dependency cycle: ${[...path, plugin.name].join(" -> ")}` })
    }
    state.set(plugin.name, "visiting")
    for (const dependency of plugin.dependsOn) visit(byName.get(dependency)!, [...path, plugin.name])
    state.set(plugin.name, "done")
    ordered.push(plugin)
  }
  for (const plugin of plugins) visit(plugin, [])
  return ordered
}
