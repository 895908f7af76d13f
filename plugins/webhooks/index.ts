import { Layer } from "effect"
import { definePlugin } from "../../core/Plugin.ts"
import { PERMISSION, WebhooksApi } from "./Api.ts"
import { deliverTask, EndpointRuns, fanOut, FanOutWriter, sweepCron, sweepTask } from "./Dispatch.ts"
import { type WebhooksHooks, WebhooksOptions, WebhooksSettings } from "./Domain.ts"
import { EndpointsRepo } from "./EndpointsRepo.ts"
import { EndpointDisabled } from "./Events.ts"
import { WebhooksHttp } from "./Http.ts"
import { MessagesRepo } from "./MessagesRepo.ts"
import { WebhooksService } from "./Service.ts"

/**
 * The plugin with its options; `hooks` replace DNS and the jitter's randomness in tests
 * (they have no place in effect.config.ts).
 */
export const makeWebhooks = (options: WebhooksOptions, hooks: WebhooksHooks = {}) =>
  definePlugin({
    name: "webhooks",
    description: "Signed webhook deliveries of every published event to organisations' endpoints (Standard Webhooks)",
    api: WebhooksApi,
    http: WebhooksHttp,
    tasks: [deliverTask, sweepTask],
    cron: [sweepCron],
    events: { publishes: [EndpointDisabled], subscribes: [fanOut] },
    layer: Layer.mergeAll(WebhooksService.Default, FanOutWriter.Default).pipe(
      Layer.provideMerge(EndpointRuns.Default),
      Layer.provideMerge(Layer.mergeAll(EndpointsRepo.Default, MessagesRepo.Default)),
      Layer.provideMerge(Layer.succeed(WebhooksSettings, { ...options, ...hooks }))
    ),
    permissions: [{ name: PERMISSION, description: "Manage webhook endpoints, read their messages and attempts, resend and recover" }]
  })

/**
 * Webhooks: organisations register endpoints; every event published in their org is signed
 * and delivered to the matching ones, retried on Svix's schedule, with an attempt log.
 */
export const webhooks = {
  name: "webhooks",
  options: WebhooksOptions,
  make: (options: WebhooksOptions) => makeWebhooks(options)
} as const
