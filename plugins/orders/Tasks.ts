import { Effect, Schema } from "effect"
import { defineTask } from "../../core/Jobs.ts"
import type { CronItem } from "../../core/Plugin.ts"
import { syncChannel } from "./ChannelSync.ts"
import type { ChannelConfig, OrdersOptions } from "./Domain.ts"
import { OrdersService } from "./Orders.ts"

/** The import task of one channel; its own queue keeps two runs of a channel from overlapping. */
const makeSyncTask = (channel: ChannelConfig) =>
  defineTask({
    id: `orders.sync.${channel.name}`,
    payload: Schema.Struct({}),
    queue: `orders.sync.${channel.name}`,
    // Channel failures are handled by the run (backoff, breaker); what fails the task is the
    // database, worth a few retries before the next tick.
    retry: { maxAttempts: 3 },
    timeout: "15 minutes",
    handler: () => syncChannel(channel).pipe(Effect.asVoid, Effect.provide(OrdersService.Default))
  })

export const makeTasks = (options: OrdersOptions) => {
  const sync = options.channels.map((channel) => ({ channel, task: makeSyncTask(channel) }))
  const cron: ReadonlyArray<CronItem> = sync.map(({ channel, task }) => ({
    id: `orders.sync.${channel.name}`,
    schedule: channel.schedule,
    task,
    payload: {}
  }))
  return { tasks: sync.map((s) => s.task), cron }
}
