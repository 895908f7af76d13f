import { SqlClient } from "@effect/sql"
import { Effect, Either, Metric, Option, Schema } from "effect"
import { createHash } from "node:crypto"
import { requireFlag } from "../../core/FeatureGate.ts"
import { CurrentTenant, inTenant } from "../../core/Tenancy.ts"
import { fetchPage } from "./ChannelClient.ts"
import { OrderInput, type ChannelConfig } from "./Domain.ts"
import { OrdersService } from "./Orders.ts"

type BreakerState = "closed" | "open" | "half_open"

const BREAKER_GAUGE_VALUES: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 }

const breakerGauge = Metric.gauge("orders_channel_breaker_state", {
  description: "Circuit breaker of a sales channel's import: 0 closed, 1 half-open, 2 open"
})
const breakerTransitions = Metric.counter("orders_channel_breaker_transitions_total", {
  description: "Circuit breaker state changes of a sales channel's import by channel and new state",
  incremental: true
})
const importedOrders = Metric.counter("orders_channel_orders_total", {
  description: "Orders received from a sales channel by channel and outcome (created, duplicate, rejected)",
  incremental: true
})
const skippedRuns = Metric.counter("orders_channel_runs_skipped_total", {
  description: "Channel import runs skipped because the channel's circuit breaker is open",
  incremental: true
})

type ImportOutcome = "created" | "duplicate" | "rejected"

export interface SyncResult {
  readonly ran: boolean
  /** Why a run did not happen: the breaker is open, or the org switched the import off. */
  readonly skipped?: "breaker_open" | "disabled"
  readonly breaker: BreakerState
  readonly pages: number
  readonly outcomes: Readonly<Record<ImportOutcome, number>>
  readonly error?: string
}

const decodeOrder = Schema.decodeUnknownEither(OrderInput, { errors: "all" })

/** The key a rejected order is stored under: its external id, else a hash of what was sent. */
const rejectionKey = (raw: unknown) => {
  const externalId = (raw as { externalId?: unknown } | null)?.externalId
  return typeof externalId === "string" && externalId.length > 0 && externalId.length <= 100
    ? externalId
    : `sha256:${createHash("sha256").update(JSON.stringify(raw) ?? "null").digest("hex")}`
}

/**
 * One import run of a channel: pulls pages of new orders since the stored cursor, places each
 * order in its own tenant transaction (so its stock locks follow the same order as every other
 * placement's, and a bad order cannot undo the good ones), and stores the cursor after each
 * page. A crash between an order and its page's cursor makes the next run fetch that page
 * again; (channel, externalId) being unique turns the repeats into `duplicate`s, so nothing is
 * imported twice and nothing is skipped.
 *
 * Failed runs (each page already retried with backoff) are counted; at the threshold the
 * breaker opens and runs are skipped until the cooldown has passed, then one run is tried
 * (half-open): success closes the breaker, failure opens it again.
 */
export const syncChannel = (channel: ChannelConfig) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const orders = yield* OrdersService
    const tenant = <A, E, R>(effect: Effect.Effect<A, E, R>) => inTenant(channel.orgId, effect)
    const actor = { kind: "channel", id: channel.name }
    const annotate = Effect.annotateLogs({ channel: channel.name })
    const gauge = Metric.tagged(breakerGauge, "channel", channel.name)
    const thisChannel = sql`org_id = core.current_org_id() and channel = ${channel.name}`

    const breakerMoved = (from: BreakerState, to: BreakerState, reason: string) =>
      Effect.all([
        Metric.set(gauge, BREAKER_GAUGE_VALUES[to]),
        Metric.increment(Metric.tagged(Metric.tagged(breakerTransitions, "channel", channel.name), "state", to)),
        (to === "open" ? Effect.logWarning : Effect.logInfo)(`channel circuit breaker ${from} -> ${to}: ${reason}`).pipe(annotate)
      ])

    // The row exists from the first run on; `cooled` says whether an open breaker may try again.
    const [state] = yield* tenant(
      sql`insert into orders.channel_sync (channel) values (${channel.name}) on conflict (org_id, channel) do nothing`.pipe(
        Effect.zipRight(sql<{ breaker: BreakerState; cursor: string | null; cooled: boolean }>`
          select breaker, cursor, coalesce(opened_at + make_interval(secs => ${channel.cooldownSeconds}) <= now(), true) as cooled
            from orders.channel_sync where ${thisChannel}`)
      )
    )
    let breaker = state!.breaker
    const outcomes: Record<ImportOutcome, number> = { created: 0, duplicate: 0, rejected: 0 }
    yield* Metric.set(gauge, BREAKER_GAUGE_VALUES[breaker])

    // The org's kill switch for this import: a flag `orders.sync.<channel>` switched off.
    const enabled = yield* requireFlag(`orders.sync.${channel.name}`).pipe(
      Effect.provideService(CurrentTenant, Option.some(channel.orgId)),
      Effect.as(true),
      Effect.catchTag("ServiceUnavailable", () => Effect.succeed(false))
    )
    if (!enabled) {
      yield* Effect.logInfo("channel import switched off by its feature flag; run skipped").pipe(annotate)
      return { ran: false, skipped: "disabled", breaker, pages: 0, outcomes } satisfies SyncResult
    }
    if (breaker === "open") {
      if (!state!.cooled) {
        yield* Metric.increment(Metric.tagged(skippedRuns, "channel", channel.name))
        yield* Effect.logDebug("channel circuit breaker open; run skipped").pipe(annotate)
        return { ran: false, skipped: "breaker_open", breaker, pages: 0, outcomes } satisfies SyncResult
      }
      yield* tenant(sql`update orders.channel_sync set breaker = 'half_open' where ${thisChannel}`)
      yield* breakerMoved("open", "half_open", `cooldown of ${channel.cooldownSeconds} s over; trying one run`)
      breaker = "half_open"
    }

    const reject = (raw: unknown, reason: string) =>
      tenant(sql`
        insert into orders.channel_rejections (channel, external_id, reason, payload)
        values (${channel.name}, ${rejectionKey(raw)}, ${reason}, ${JSON.stringify(raw) ?? "null"}::jsonb)
        on conflict (org_id, channel, external_id) do update
          set reason = excluded.reason, payload = excluded.payload,
              attempts = channel_rejections.attempts + 1, last_seen_at = now()`)

    const importOne = (raw: unknown) =>
      Effect.gen(function* () {
        const decoded = decodeOrder(raw)
        if (Either.isLeft(decoded)) {
          yield* reject(raw, `invalid order: ${decoded.left.message}`)
          return "rejected" as const
        }
        const placed = yield* tenant(
          orders.place(channel.name, decoded.right, actor).pipe(
            Effect.tap(() =>
              sql`delete from orders.channel_rejections where ${thisChannel} and external_id = ${decoded.right.externalId}`
            )
          )
        ).pipe(Effect.either)
        if (Either.isRight(placed)) return "created" as const
        const error = placed.left
        switch (error._tag) {
          case "DuplicateOrder":
            return "duplicate" as const
          case "InsufficientStock":
          case "UnknownSku":
          case "BadRequest":
            yield* reject(raw, error.message)
            return "rejected" as const
          default:
            // The database, not the order: stop here so the page is fetched again next run.
            return yield* Effect.fail(error)
        }
      }).pipe(
        Effect.tap((outcome) =>
          Metric.increment(Metric.tagged(Metric.tagged(importedOrders, "channel", channel.name), "outcome", outcome))
        ),
        Effect.orDie
      )

    let cursor = state!.cursor
    let pages = 0
    while (pages < channel.maxPagesPerRun) {
      const page = yield* Effect.either(fetchPage(channel, cursor))
      if (Either.isLeft(page)) {
        const message = page.left.message
        const [after] = yield* tenant(sql<{ breaker: BreakerState; consecutive_failures: number }>`
          update orders.channel_sync set
            consecutive_failures = consecutive_failures + 1,
            breaker = case when breaker = 'half_open' or consecutive_failures + 1 >= ${channel.failureThreshold}
                           then 'open' else breaker end,
            opened_at = case when breaker = 'half_open' or consecutive_failures + 1 >= ${channel.failureThreshold}
                             then now() else opened_at end,
            last_error = ${message}, last_run_at = now()
           where ${thisChannel}
          returning breaker, consecutive_failures`)
        yield* Effect.logWarning(`channel import failed: ${message}`).pipe(
          Effect.annotateLogs({ consecutiveFailures: after!.consecutive_failures }),
          annotate
        )
        if (after!.breaker !== breaker) {
          yield* breakerMoved(breaker, after!.breaker, `${after!.consecutive_failures} failed runs in a row; last: ${message}`)
        }
        return { ran: true, breaker: after!.breaker, pages, outcomes, error: message } satisfies SyncResult
      }
      pages++
      if (breaker === "half_open") {
        yield* tenant(sql`update orders.channel_sync set breaker = 'closed', opened_at = null where ${thisChannel}`)
        yield* breakerMoved("half_open", "closed", "the trial run got an answer")
        breaker = "closed"
      }
      let created = 0
      for (const raw of page.right.orders) {
        const outcome = yield* importOne(raw)
        outcomes[outcome]++
        if (outcome === "created") created++
      }
      const next = page.right.nextCursor
      const advanced = next !== null && next !== cursor
      if (advanced || created > 0) {
        yield* tenant(sql`
          update orders.channel_sync set cursor = ${advanced ? next : cursor}, imported = imported + ${created}
           where ${thisChannel}`)
        cursor = advanced ? next : cursor
      }
      // An empty page, no cursor or the same cursor again: the channel has nothing newer now.
      if (page.right.orders.length === 0 || !advanced) break
    }
    yield* tenant(sql`
      update orders.channel_sync set consecutive_failures = 0, breaker = 'closed', opened_at = null, last_error = null,
             last_run_at = now(), last_success_at = now()
       where ${thisChannel}`)
    if (outcomes.created + outcomes.rejected > 0) {
      yield* Effect.logInfo("channel import").pipe(Effect.annotateLogs({ pages, ...outcomes }), annotate)
    }
    return { ran: true, breaker, pages, outcomes } satisfies SyncResult
  }).pipe(Effect.withSpan("orders.channel.sync", { attributes: { "channel.name": channel.name } }))
