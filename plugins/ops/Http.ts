import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option } from "effect"
import { requirePermission } from "../../core/Auth.ts"
import { NotFound } from "../../core/Errors.ts"
import { requireFlag } from "../../core/FeatureGate.ts"
import { queueStats } from "../../core/JobStats.ts"
import { PluginRegistry } from "../../core/Registry.ts"
import { OpsApi } from "./Api.ts"
import { OpsRepo } from "./Repo.ts"

export const MASS_RETRY_FLAG = "ops.mass-retry"

const notFound = (id: number) => new NotFound({ message: `dead letter ${id} not found`, resource: "dead_letter", id: String(id) })

export const OpsHttp = HttpApiBuilder.group(OpsApi, "ops", (handlers) =>
  Effect.gen(function* () {
    const repo = yield* OpsRepo
    const registry = yield* PluginRegistry
    const read = requirePermission("ops:read")
    const write = requirePermission("ops:write")
    return handlers
      .handle("health", () => Effect.as(read, { status: "ok" as const }))
      .handle("listDeadLetters", ({ urlParams }) => read.pipe(Effect.zipRight(repo.list(urlParams)), Effect.orDie))
      .handle("getDeadLetter", ({ path }) =>
        read.pipe(
          Effect.zipRight(Effect.orDie(repo.get(path.id))),
          Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound(path.id)), onSome: Effect.succeed }))
        )
      )
      .handle("retryDeadLetter", ({ path }) =>
        write.pipe(
          Effect.zipRight(Effect.orDie(repo.retry({ ids: [path.id] }))),
          Effect.flatMap((moved) => (moved[0] ? Effect.succeed(moved[0]) : Effect.fail(notFound(path.id))))
        )
      )
      .handle("retryDeadLetters", ({ payload }) =>
        write.pipe(
          // A kill switch for mass retries, per organisation (core FeatureGate; on unless defined).
          Effect.zipRight(requireFlag(MASS_RETRY_FLAG)),
          Effect.zipRight(Effect.orDie(repo.retry(payload))),
          Effect.map((moved) => ({ count: moved.length }))
        )
      )
      .handle("discardDeadLetter", ({ path }) =>
        write.pipe(
          Effect.zipRight(Effect.orDie(repo.discard({ ids: [path.id] }))),
          Effect.flatMap((count) => (count === 1 ? Effect.void : Effect.fail(notFound(path.id))))
        )
      )
      .handle("discardDeadLetters", ({ payload }) =>
        write.pipe(
          Effect.zipRight(Effect.orDie(repo.discard(payload))),
          Effect.map((count) => ({ count }))
        )
      )
      .handle("queues", () =>
        read.pipe(
          Effect.zipRight(Effect.orDie(Effect.all([queueStats, repo.deadLetterCounts]))),
          Effect.map(([stats, dead]) => {
            const byTask = new Map(stats.map((s) => [s.task, { ...s, deadLetters: dead.get(s.task) ?? 0 }]))
            for (const [task, count] of dead) {
              if (!byTask.has(task)) {
                byTask.set(task, { task, pending: 0, scheduled: 0, running: 0, retrying: 0, oldestPendingAgeSeconds: 0, deadLetters: count })
              }
            }
            return [...byTask.values()].sort((a, b) => a.task.localeCompare(b.task))
          })
        )
      )
      .handle("registrations", () =>
        Effect.as(read, {
          tasks: registry.tasks.map(({ plugin, item }) => ({
            id: item.id,
            plugin,
            queue: item.queue ?? null,
            maxAttempts: item.retry?.maxAttempts ?? null
          })),
          cron: registry.cron.map(({ plugin, item }) => ({
            id: item.id,
            plugin,
            schedule: item.schedule,
            task: item.task.id
          }))
        })
      )
  })
)
