import { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, Option, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { Webhook } from "standardwebhooks"
import { defineEvent, publish } from "../../../core/Events.ts"
import { definePlugin } from "../../../core/Plugin.ts"
import { CurrentTenant, inTenant } from "../../../core/Tenancy.ts"
import { deliverTask, type DeliverJob, fanOutTask } from "../../../plugins/webhooks/Dispatch.ts"
import { CreateEndpoint, type WebhooksHooks, WebhooksOptions } from "../../../plugins/webhooks/Domain.ts"
import { WebhooksService } from "../../../plugins/webhooks/Service.ts"
import { makeWebhooks } from "../../../plugins/webhooks/index.ts"
import { IdentityOptions } from "../../../plugins/identity/Domain.ts"
import { identity } from "../../../plugins/identity/index.ts"
import type { AppConfig } from "../../../runtime/Config.ts"
import { baseUrl, testAppLayer } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"
import type { Received } from "./receiver.ts"

/** A plugin publishing a few event types, for filters and payloads. */
export const OrderCreated = defineEvent("shop.order.created", Schema.Struct({ orderId: Schema.String, total: Schema.Number }))
export const OrderShipped = defineEvent("shop.order.shipped", Schema.Struct({ orderId: Schema.String }))
export const InvoicePaid = defineEvent("shop.invoice.paid", Schema.Struct({ invoiceId: Schema.String }))

export const shop = definePlugin({
  name: "shop",
  description: "Events for the webhooks tests",
  events: { publishes: [OrderCreated, OrderShipped, InvoicePaid] },
  migrations: { load: Effect.succeed([]) }
})

/** Options as effect.config.ts would give them, local receivers allowed. */
export const options = (raw: Partial<typeof WebhooksOptions.Encoded> = {}) =>
  Schema.decodeUnknownSync(WebhooksOptions)({ requireHttps: false, allow: ["127.0.0.1/32"], ...raw })

export interface AppOptions {
  readonly webhooks?: Partial<typeof WebhooksOptions.Encoded>
  readonly hooks?: WebhooksHooks
  readonly worker?: boolean
  /** The HTTP server with the identity plugin, whose routes make tenants (`createTenant`). */
  readonly http?: boolean
  readonly config?: Partial<AppConfig>
  /** Another process's view of an existing test database (a second worker). */
  readonly db?: { readonly url: string }
}

const identityPlugin = identity.make(
  Schema.decodeUnknownSync(IdentityOptions)({ jwtSecret: "webhooks-test-secret-0123456789abcdefghij" })
)

/** Only these variables, so a developer's own TRELLIS_* settings cannot leak into the identity plugin. */
const identityEnv = Layer.setConfigProvider(
  ConfigProvider.fromMap(
    new Map([
      ["TRELLIS_BOOTSTRAP_EMAIL", "owner@example.test"],
      ["TRELLIS_BOOTSTRAP_PASSWORD", "owner-password-0123"]
    ])
  )
)

/** A database of its own with the app (and optionally the worker and HTTP) for the test's scope. */
export const app = (opts: AppOptions = {}) =>
  Effect.gen(function* () {
    const db = opts.db ?? (yield* testDatabase())
    const plugin = makeWebhooks(options(opts.webhooks), opts.hooks ?? { random: () => 0.5 })
    const context = yield* Layer.build(
      testAppLayer({
        databaseUrl: db.url,
        plugins: [...(opts.http ? [identityPlugin] : []), plugin, shop],
        worker: opts.worker ?? false,
        http: opts.http ?? false,
        ...(opts.config ? { config: opts.config } : {})
      }).pipe(Layer.provide(identityEnv))
    )
    const sql = yield* Effect.provide(SqlClient.SqlClient, context)
    const base = opts.http ? yield* Effect.provide(baseUrl, context) : ""
    return { context, sql, plugin, base, db }
  })

export type App = Effect.Effect.Success<ReturnType<typeof app>>

/** Runs `effect` as the given org's work, as a request or job of it would. */
export const asOrg =
  (context: App["context"], orgId: string) =>
  <A, E>(effect: Effect.Effect<A, E, Layer.Layer.Success<ReturnType<typeof testAppLayer>> | SqlClient.SqlClient>) =>
    inTenant(orgId, effect).pipe(Effect.provide(context))

/** Runs one delivery job as the worker would: in the job's tenant. */
export const runDelivery = (context: App["context"], orgId: string, job: DeliverJob) =>
  deliverTask.handler(job).pipe(Effect.provideService(CurrentTenant, Option.some(orgId)), Effect.provide(context))

export const verify = (secret: string, received: Received) =>
  new Webhook(secret).verify(received.body, Object.fromEntries(Object.entries(received.headers).map(([k, v]) => [k, String(v)])))

const decodeEvent = Schema.decodeUnknownSync(fanOutTask.payload)
const decodeCreate = Schema.decodeUnknownSync(CreateEndpoint)

/** A new org of the app with helpers to use the service and publish events as its work. */
export const org = (h: App) => {
  const id = randomUUID()
  const as = asOrg(h.context, id)
  const service = <A, E, R>(f: (s: WebhooksService) => Effect.Effect<A, E, R>) => as(Effect.flatMap(WebhooksService, f))
  return {
    id,
    as,
    service,
    create: (input: typeof CreateEndpoint.Encoded) => service((s) => s.create(decodeCreate(input))),
    publishOrder: (orderId: string) => as(publish(OrderCreated, { orderId, total: 12.5 }))
  }
}

/** Runs the queued fan-out jobs as the worker would, then hands over the delivery jobs they queued. */
export const fanOutNow = (h: App) =>
  Effect.gen(function* () {
    for (const job of yield* takeJobs(h.sql, "webhooks.fan_out")) {
      yield* fanOutTask
        .handler(decodeEvent(job.data))
        .pipe(Effect.provideService(CurrentTenant, Option.fromNullable(job.tenant)), Effect.provide(h.context))
    }
    return yield* takeJobs(h.sql, "webhooks.deliver")
  })

/** Fans out the queued events and runs every delivery job once. */
export const deliverAll = (h: App) =>
  Effect.flatMap(fanOutNow(h), (jobs) =>
    Effect.forEach(jobs, (job) => runDelivery(h.context, job.tenant!, job.data as DeliverJob), { discard: true })
  )

/** The clock reaching every scheduled retry and deferral: what is waiting falls due now. */
export const dueNow = (h: App) => h.sql`update webhooks.messages set due_at = now() where due_at > now()`

/** The endpoint a delivery job wakes. */
export const endpointOfJob = (job: QueuedJob) => (job.data as { endpointId: string }).endpointId

export const messageOf = (h: App, messageId: string) =>
  Effect.map(
    h.sql<{ status: string; attempts: number; endpoint_id: string }>`
      select status, attempts, endpoint_id from webhooks.messages where id = ${messageId}`,
    (rows) => rows[0]!
  )

export interface QueuedJob {
  readonly task: string
  readonly data: unknown
  readonly tenant: string | undefined
  readonly runAt: Date
  /** Milliseconds from the last attempt to the endpoint the job wakes to its run_at. */
  readonly afterLastAttemptMs: number | null
}

/** Removes the queued jobs of `task` and returns them, oldest first (tests run them by hand). */
export const takeJobs = (sql: SqlClient.SqlClient, task: string) =>
  sql<{ payload: { data: unknown; tenant?: string }; run_at: Date; after_ms: number | null }>`
    with taken as (
      delete from graphile_worker._private_jobs j
       using graphile_worker._private_tasks t
       where t.id = j.task_id and t.identifier = ${task}
      returning j.id, j.payload, j.run_at
    )
    select taken.payload, taken.run_at,
           (extract(epoch from taken.run_at - (select max(a.attempted_at) from webhooks.attempts a
                                                 join webhooks.messages m on m.id = a.message_id
                                                where m.endpoint_id = taken.payload->'data'->>'endpointId')) * 1000)::float8 as after_ms
      from taken order by taken.id`.pipe(
    Effect.map((rows) =>
      rows.map(
        (row): QueuedJob => ({
          task,
          data: row.payload.data,
          tenant: row.payload.tenant,
          runAt: row.run_at,
          afterLastAttemptMs: row.after_ms
        })
      )
    )
  )
