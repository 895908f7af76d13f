import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import { renderPrometheus } from "../../../core/Metrics.ts"
import { inTenant } from "../../../core/Tenancy.ts"
import { ItemsRepo } from "../../../plugins/inventory/Items.ts"
import { StockLedger } from "../../../plugins/inventory/Stock.ts"
import { syncChannel } from "../../../plugins/orders/ChannelSync.ts"
import { ChannelConfig } from "../../../plugins/orders/Domain.ts"
import { orders } from "../../../plugins/orders/index.ts"
import { channelOrder, startChannel, type TestChannel } from "./channel.ts"
import { countRows, ordersAppLayer, seedStock, switchedOff } from "./fixtures.ts"

const configFor = (name: string, orgId: string, channel: TestChannel, overrides: Partial<typeof ChannelConfig.Encoded> = {}) =>
  Schema.decodeSync(ChannelConfig)({
    name,
    orgId,
    url: channel.url,
    pageSize: 5,
    timeoutMs: 300,
    retries: 2,
    retryBaseMs: 5,
    failureThreshold: 2,
    cooldownSeconds: 60,
    ...overrides
  })

const externalIds = (orgId: string, channel: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    inTenant(orgId, sql<{ external_id: string }>`
      select external_id from orders.orders where channel = ${channel} order by external_id`).pipe(
      Effect.map((rows) => rows.map((r) => r.external_id).sort())
    )
  )

const channelRow = (orgId: string, channel: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    inTenant(orgId, sql<{ breaker: string; consecutive_failures: number; cursor: string | null; imported: number }>`
      select breaker, consecutive_failures, cursor, imported from orders.channel_sync where channel = ${channel}`).pipe(
      Effect.map((rows) => rows[0]!)
    )
  )

layer(ordersAppLayer(), { excludeTestServices: true, timeout: "120 seconds" })("channel sync", (it) => {
  it.scoped("imports through failures, timeouts and repeated orders: each order once, none lost", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "CH", main: 1_000 }])
      const sent = Array.from({ length: 23 }, () => channelOrder("CH"))
      const channel = yield* startChannel([...sent])
      channel.overlap = 2
      // A 503, then a hang (timeout), then garbage: each retried; a run with more than two
      // failures in a row for one page stops and tries again next time.
      channel.script.push("fail", "ok", "hang", "ok", "garbage")
      const config = configFor("shop", orgId, channel)
      const first = yield* syncChannel(config)
      // `garbage` is not transient: that run stops at the page it hit.
      expect(first).toMatchObject({ ran: true, breaker: "closed" })
      expect(first.error).toContain("not a page of orders")
      const second = yield* syncChannel(config)
      expect(second.error).toBeUndefined()
      expect(yield* externalIds(orgId, "shop")).toEqual(sent.map((o) => o.externalId).sort())
      expect(first.outcomes.duplicate + second.outcomes.duplicate).toBeGreaterThan(0)
      expect(first.outcomes.created + second.outcomes.created).toBe(23)

      // As if the process died after importing but before storing the cursor: all repeats.
      const sql = yield* SqlClient.SqlClient
      yield* inTenant(orgId, sql`update orders.channel_sync set cursor = null where channel = 'shop'`)
      const replay = yield* syncChannel(config)
      expect(replay.outcomes).toMatchObject({ created: 0, rejected: 0 })
      // Every order comes back once, plus the pages' overlaps.
      expect(replay.outcomes.duplicate).toBeGreaterThanOrEqual(23)
      expect(yield* countRows(orgId, "orders.orders")).toBe(23)
      expect((yield* inTenant(orgId, (yield* ItemsRepo).get("CH"))).reserved).toBe(23)

      // Later orders arrive and are picked up from the stored cursor.
      channel.orders.push(channelOrder("CH"), channelOrder("CH"))
      const later = yield* syncChannel(config)
      expect(later.outcomes.created).toBe(2)
      expect(yield* channelRow(orgId, "shop")).toMatchObject({ breaker: "closed", consecutive_failures: 0, cursor: "25", imported: 25 })
    })
  )

  it.scoped("orders that cannot be placed are kept as rejections and placed when sent again", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "OK", main: 10 }])
      const unknownSku = channelOrder("LATER")
      const badCurrency = channelOrder("OK", 1, { currency: "XXY" })
      const channel = yield* startChannel([channelOrder("OK"), unknownSku, badCurrency, { customer: "no id" }])
      const config = configFor("market", orgId, channel)
      const run = yield* syncChannel(config)
      expect(run.outcomes).toEqual({ created: 1, duplicate: 0, rejected: 3 })
      const sql = yield* SqlClient.SqlClient
      const rejections = () =>
        inTenant(orgId, sql<{ external_id: string; reason: string; attempts: number }>`
          select external_id, reason, attempts from orders.channel_rejections order by id`)
      const rejected = yield* rejections()
      expect(rejected.map((r) => r.external_id.startsWith("sha256:") ? "hash" : r.external_id)).toEqual([
        unknownSku.externalId,
        badCurrency.externalId,
        "hash"
      ])
      expect(rejected[0]!.reason).toContain("LATER")
      expect(rejected[1]!.reason).toContain("XXY")

      // The sku arrives; the channel sends the order again (a replay from the start).
      yield* inTenant(
        orgId,
        Effect.gen(function* () {
          yield* (yield* ItemsRepo).create({ sku: "LATER", name: "Later", unit: "each", reorderThreshold: 0, attributes: {} })
          yield* (yield* StockLedger).adjust({ kind: "receive", reason: "x", lines: [{ sku: "LATER", location: "main", quantity: 1 }] })
        })
      )
      yield* inTenant(orgId, sql`update orders.channel_sync set cursor = null where channel = 'market'`)
      const again = yield* syncChannel(config)
      expect(again.outcomes).toEqual({ created: 1, duplicate: 1, rejected: 2 })
      expect((yield* rejections()).map((r) => r.attempts)).toEqual([2, 2])
      expect(yield* externalIds(orgId, "market")).toHaveLength(2)
    })
  )

  it.scoped("a dead channel opens the breaker, is skipped until the cooldown, then half-opens and closes", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "BR", main: 10 }])
      const channel = yield* startChannel([channelOrder("BR")])
      const config = configFor("dead", orgId, channel, { timeoutMs: 100, retries: 1 })
      const sql = yield* SqlClient.SqlClient
      channel.script.push("fail", "hang", "fail", "fail")
      expect(yield* syncChannel(config)).toMatchObject({ ran: true, breaker: "closed" })
      expect(yield* channelRow(orgId, "dead")).toMatchObject({ breaker: "closed", consecutive_failures: 1 })
      expect(yield* syncChannel(config)).toMatchObject({ ran: true, breaker: "open" })
      expect(channel.requests).toBe(4)

      const skipped = yield* syncChannel(config)
      expect(skipped).toMatchObject({ ran: false, breaker: "open" })
      expect(channel.requests).toBe(4)
      const metrics = yield* renderPrometheus([])
      expect(metrics).toContain('orders_channel_breaker_state{channel="dead"} 2')
      expect(metrics).toMatch(/orders_channel_runs_skipped_total\{channel="dead"\} 1/)

      // The cooldown passes; the trial run fails, so the breaker opens again at once.
      const cool = sql`update orders.channel_sync set opened_at = now() - interval '2 minutes' where channel = 'dead'`
      yield* inTenant(orgId, cool)
      channel.script.push("fail", "fail")
      expect(yield* syncChannel(config)).toMatchObject({ ran: true, breaker: "open" })
      yield* inTenant(orgId, cool)
      const recovered = yield* syncChannel(config)
      expect(recovered).toMatchObject({ ran: true, breaker: "closed", outcomes: { created: 1 } })
      expect(yield* channelRow(orgId, "dead")).toMatchObject({ breaker: "closed", consecutive_failures: 0 })
      const after = yield* renderPrometheus([])
      expect(after).toContain('orders_channel_breaker_state{channel="dead"} 0')
      expect(after).toMatch(/orders_channel_breaker_transitions_total\{channel="dead",state="half_open"\} 2/)
    })
  )

  it.scoped("an org's feature flag switches a channel's import off without touching the channel", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "KS", main: 5 }])
      const channel = yield* startChannel([channelOrder("KS")])
      const config = configFor("paused", orgId, channel)
      switchedOff.add("orders.sync.paused")
      const skipped = yield* syncChannel(config).pipe(Effect.ensuring(Effect.sync(() => switchedOff.delete("orders.sync.paused"))))
      expect(skipped).toMatchObject({ ran: false, skipped: "disabled" })
      expect(channel.requests).toBe(0)
      expect((yield* syncChannel(config)).outcomes.created).toBe(1)
    })
  )

  it.scoped("each configured channel gets a task on its own queue and a cron item; the task runs an import", () =>
    Effect.gen(function* () {
      const orgId = yield* seedStock([{ sku: "TK", main: 5 }])
      const channel = yield* startChannel([channelOrder("TK"), channelOrder("TK")])
      const plugin = orders.make({ channels: [configFor("blinkit", orgId, channel, { schedule: "*/5 * * * *" })] })
      expect(plugin.tasks.map((t) => [t.id, t.queue])).toEqual([["orders.sync.blinkit", "orders.sync.blinkit"]])
      expect(plugin.cron.map((c) => [c.id, c.schedule, c.task.id])).toEqual([["orders.sync.blinkit", "*/5 * * * *", "orders.sync.blinkit"]])
      yield* plugin.tasks[0]!.handler({})
      expect(yield* externalIds(orgId, "blinkit")).toHaveLength(2)
      const states = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        inTenant(orgId, sql<{ org_id: string }>`select org_id from orders.channel_sync`)
      )
      expect(states).toEqual([{ org_id: orgId }])
    })
  )
})
