import { Data, Duration, Effect, Either, Metric, Schedule, Schema } from "effect"
import type { ChannelConfig } from "./Domain.ts"

/**
 * What a channel's endpoint answers to `GET <url>?limit=<n>[&cursor=<c>]`: orders created
 * since the cursor, oldest first, and the cursor to ask with next (null: keep the one sent).
 * Orders are decoded one by one later, so one malformed order cannot hide the others.
 */
const ChannelPage = Schema.Struct({
  orders: Schema.Array(Schema.Unknown),
  nextCursor: Schema.NullOr(Schema.String.pipe(Schema.maxLength(1000)))
})

/** A failed page request; transient ones (network, timeout, 429, 5xx) are retried. */
export class ChannelFailure extends Data.TaggedError("ChannelFailure")<{
  readonly message: string
  readonly transient: boolean
}> {}

const fetchAttemptFailures = Metric.counter("orders_channel_fetch_failures_total", {
  description: "Failed page requests to a sales channel (every attempt, retries included) by channel",
  incremental: true
})

const decodePage = Schema.decodeUnknownEither(Schema.parseJson(ChannelPage))

const MAX_ERROR_BODY = 200

const attempt = (channel: ChannelConfig, cursor: string | null) =>
  Effect.tryPromise({
    try: async (signal) => {
      const url = new URL(channel.url)
      url.searchParams.set("limit", String(channel.pageSize))
      if (cursor !== null) url.searchParams.set("cursor", cursor)
      const response = await fetch(url, { signal, headers: { accept: "application/json" }, redirect: "error" })
      return { status: response.status, body: await response.text() }
    },
    catch: (error) =>
      new ChannelFailure({ message: `request failed: ${error instanceof Error ? error.message : String(error)}`, transient: true })
  }).pipe(
    // Interrupting the request aborts it (tryPromise's signal), so a hung channel costs one timeout.
    Effect.timeoutFail({
      duration: Duration.millis(channel.timeoutMs),
      onTimeout: () => new ChannelFailure({ message: `no answer within ${channel.timeoutMs} ms`, transient: true })
    }),
    Effect.flatMap(({ status, body }) => {
      if (status < 200 || status >= 300) {
        return Effect.fail(
          new ChannelFailure({
            message: `HTTP ${status}: ${body.slice(0, MAX_ERROR_BODY)}`,
            transient: status === 429 || status === 408 || status >= 500
          })
        )
      }
      const page = decodePage(body)
      return Either.isRight(page)
        ? Effect.succeed(page.right)
        : Effect.fail(new ChannelFailure({ message: `not a page of orders: ${page.left.message.slice(0, MAX_ERROR_BODY)}`, transient: false }))
    }),
    Effect.tapError(() => Metric.increment(Metric.tagged(fetchAttemptFailures, "channel", channel.name)))
  )

/** One page of new orders, retrying transient failures with jittered exponential backoff. */
export const fetchPage = (channel: ChannelConfig, cursor: string | null) =>
  attempt(channel, cursor).pipe(
    Effect.retry({
      schedule: Schedule.jittered(Schedule.exponential(Duration.millis(channel.retryBaseMs))),
      times: channel.retries,
      while: (failure) => failure.transient
    }),
    Effect.withSpan("orders.channel.fetchPage", { attributes: { "channel.name": channel.name } })
  )
