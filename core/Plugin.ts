import { HttpLayerRouter } from "@effect/platform"
import type { HttpApi, HttpApiGroup } from "@effect/platform"
import { Duration, Effect, Layer, Schema } from "effect"
import { fileURLToPath } from "node:url"
import type { EventType, Subscription } from "./Events.ts"
import type { Task } from "./Jobs.ts"
import { loadMigrationDir, type Migration, type MigrationError } from "./Migrations.ts"

/** A recurring job: graphile-worker cron syntax, evaluated in UTC. */
export interface CronItem<A = any> {
  /** Unique id, prefixed by the plugin's name (`ops.prune`). */
  readonly id: string
  readonly schedule: string
  readonly task: Task<A>
  /** The payload each tick enqueues (decoded form); defaults to `{}`. */
  readonly payload?: A
  /** Run ticks missed while no worker was up, as far back as this. */
  readonly backfill?: Duration.DurationInput
}

export interface Permission {
  readonly name: string
  readonly description: string
}

export type MigrationSource =
  | { readonly dir: string }
  | { readonly load: Effect.Effect<ReadonlyArray<Migration>, MigrationError> }

/**
 * A plugin. `R` is what its routes, tasks and layer need from core (SqlClient, Cache,
 * Mailer, ...): the runtime provides those, and a plugin needing anything else does not
 * type-check where the runtime lists it.
 */
export interface Plugin<R = never> {
  /** Type-level only: the core services this plugin needs. */
  readonly requires?: (_: never) => R
  readonly name: string
  readonly description: string
  /** Plugins whose migrations must run before this one's. */
  readonly dependsOn: ReadonlyArray<string>
  /** The plugin's HttpApi (for the combined OpenAPI document) and its routes with handlers. */
  readonly http?: {
    readonly api: HttpApi.HttpApi.AnyWithProps
    readonly routes: Layer.Layer<never, unknown, never>
  }
  // Requirements are erased here and carried by `requires`: the runtime provides the core
  // services and every plugin layer to routes and tasks alike.
  readonly tasks: ReadonlyArray<Task>
  readonly cron: ReadonlyArray<CronItem>
  readonly migrations: MigrationSource
  readonly events: {
    readonly publishes: ReadonlyArray<EventType>
    readonly subscribes: ReadonlyArray<Subscription>
  }
  /** The plugin's own services, available to its handlers and tasks. */
  readonly layer?: Layer.Layer<unknown, unknown, never>
  readonly permissions: ReadonlyArray<Permission>
}

/** Where `sql/<plugin>/` lives in this repository. */
export const sqlDir = (name: string) => fileURLToPath(new URL(`../sql/${name}/`, import.meta.url))

export const pluginName = Schema.String.pipe(Schema.pattern(/^[a-z][a-z0-9_]*$/))

export const definePlugin = <
  ApiId extends string = never,
  Groups extends HttpApiGroup.HttpApiGroup.Any = never,
  ApiE = never,
  ApiR = never,
  HttpE = never,
  HttpR = never,
  TaskR = never,
  LayerOut = never,
  LayerE = never,
  LayerR = never
>(definition: {
  readonly name: string
  readonly description?: string
  readonly dependsOn?: ReadonlyArray<string>
  readonly api?: HttpApi.HttpApi<ApiId, Groups, ApiE, ApiR>
  readonly http?: Layer.Layer<HttpApiGroup.ApiGroup<ApiId, HttpApiGroup.HttpApiGroup.Name<Groups>>, HttpE, HttpR>
  readonly tasks?: ReadonlyArray<Task<any, any, TaskR>>
  readonly cron?: ReadonlyArray<CronItem>
  readonly migrations?: MigrationSource
  readonly events?: {
    readonly publishes?: ReadonlyArray<EventType>
    readonly subscribes?: ReadonlyArray<Subscription & { readonly task: Task<any, any, TaskR> }>
  }
  readonly layer?: Layer.Layer<LayerOut, LayerE, LayerR>
  readonly permissions?: ReadonlyArray<Permission>
}): Plugin<Exclude<HttpR | TaskR | ApiR | RouteRequirements<ApiId, Groups, ApiR>, LayerOut> | LayerR> => {
  if (!Schema.is(pluginName)(definition.name)) {
    throw new Error(`plugin name ${JSON.stringify(definition.name)} must match [a-z][a-z0-9_]*`)
  }
  const { api, http } = definition
  if ((api === undefined) !== (http === undefined)) {
    throw new Error(`plugin ${definition.name}: api and http go together`)
  }
  return {
    name: definition.name,
    description: definition.description ?? "",
    dependsOn: definition.dependsOn ?? [],
    ...(api && http
      ? {
          http: {
            api: api as unknown as HttpApi.HttpApi.AnyWithProps,
            routes: HttpLayerRouter.addHttpApi(api).pipe(Layer.provide(http)) as Layer.Layer<never, unknown, never>
          }
        }
      : {}),
    tasks: definition.tasks ?? [],
    cron: definition.cron ?? [],
    migrations: definition.migrations ?? { dir: sqlDir(definition.name) },
    events: {
      publishes: definition.events?.publishes ?? [],
      subscribes: definition.events?.subscribes ?? []
    },
    ...(definition.layer ? { layer: definition.layer as Layer.Layer<unknown, unknown, never> } : {}),
    permissions: definition.permissions ?? []
  }
}

type RouteRequirements<ApiId extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, ApiR> = Exclude<
  Layer.Layer.Context<ReturnType<typeof HttpLayerRouter.addHttpApi<ApiId, Groups, never, ApiR>>>,
  HttpApiGroup.ApiGroup<ApiId, HttpApiGroup.HttpApiGroup.Name<Groups>>
>

/** Loads a plugin's migrations from its source. */
export const loadPluginMigrations = (source: MigrationSource) =>
  "dir" in source ? loadMigrationDir(source.dir) : source.load
