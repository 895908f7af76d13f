import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, DateTime, Effect, Option, ParseResult, Schema } from "effect"
import { defineTask, enqueueEncoded, traceparentOf, type Task } from "./Jobs.ts"
import { CurrentTenant } from "./Tenancy.ts"
import { traced } from "./Tracing.ts"

// `any` defaults: registries hold event types of every payload; each is checked where defined.
/** An event type a plugin publishes: its name (prefixed by the plugin) and payload Schema. */
export interface EventType<Type extends string = string, A = any, I = any> {
  readonly type: Type
  readonly payload: Schema.Schema<A, I, never>
}

export const defineEvent = <const Type extends string, A, I>(
  type: Type,
  payload: Schema.Schema<A, I, never>
): EventType<Type, A, I> => ({ type, payload })

/** What a subscribing task receives: the event's metadata and its encoded payload. */
export const DeliveredEvent = <A, I>(payload: Schema.Schema<A, I, never>) =>
  Schema.Struct({
    id: Schema.UUID,
    type: Schema.String,
    occurredAt: Schema.DateTimeUtc,
    orgId: Schema.NullOr(Schema.String),
    data: payload
  })

export interface Delivered<A> {
  readonly id: string
  readonly type: string
  readonly occurredAt: DateTime.Utc
  readonly orgId: string | null
  readonly data: A
}

/**
 * A subscription: events whose type matches `pattern` (an exact type, `prefix.*` or `*`)
 * each enqueue one job of `task`, in the publisher's transaction.
 */
export interface Subscription {
  readonly pattern: string
  readonly task: Task
}

export const matchesPattern = (pattern: string, type: string) =>
  pattern === "*" || pattern === type || (pattern.endsWith(".*") && type.startsWith(pattern.slice(0, -1)))

/** A task that handles one event type; the payload Schema is the event's. */
export const defineSubscriber = <Type extends string, A, I, R>(options: {
  readonly id: string
  readonly event: EventType<Type, A, I>
  readonly handler: (event: Delivered<A>) => Effect.Effect<void, unknown, R>
  readonly retry?: Task["retry"]
  readonly queue?: string
}): Subscription & { readonly task: Task<unknown, unknown, R> } => ({
  pattern: options.event.type,
  task: defineTask({
    id: options.id,
    payload: DeliveredEvent(options.event.payload),
    handler: options.handler,
    retry: options.retry,
    queue: options.queue
  }) as Task<unknown, unknown, R>
})

export class UnknownEventType extends Schema.TaggedError<UnknownEventType>()("UnknownEventType", {
  message: Schema.String
}) {}

/** The event types and subscriptions of the enabled plugins, collected by the runtime. */
export class EventRegistry extends Context.Tag("trellis/EventRegistry")<
  EventRegistry,
  {
    readonly types: ReadonlyMap<string, EventType>
    readonly subscriptions: ReadonlyArray<Subscription>
  }
>() {}

export interface PublishedEvent {
  readonly id: string
  readonly type: string
  readonly subscribers: number
}

/**
 * Publishes an event on the CURRENT SQL connection: the outbox row and one job per matching
 * subscription commit or roll back with the caller's transaction. The payload is encoded with
 * the publisher's declared Schema, so a bad payload fails here, not in the subscriber.
 */
export const publish = <Type extends string, A, I>(
  event: EventType<Type, A, I>,
  payload: A
): Effect.Effect<
  PublishedEvent,
  SqlError | ParseResult.ParseError | UnknownEventType,
  SqlClient.SqlClient | EventRegistry
> =>
  Effect.gen(function* () {
    const registry = yield* EventRegistry
    if (registry.types.get(event.type) !== event) {
      return yield* new UnknownEventType({
        message: `event type ${event.type} is not declared by an enabled plugin`
      })
    }
    const sql = yield* SqlClient.SqlClient
    const data = yield* Schema.encode(event.payload)(payload)
    const tenant = Option.getOrNull(yield* CurrentTenant)
    const span = yield* Effect.option(Effect.currentSpan)
    const [row] = yield* sql<{ id: string; occurred_at: Date }>`
      insert into core.outbox_events (type, payload, org_id, traceparent)
      values (${event.type}, ${JSON.stringify(data)}::jsonb, ${tenant}, ${Option.match(span, {
        onNone: () => null,
        onSome: traceparentOf
      })})
      returning id, occurred_at`
    const subscriptions = registry.subscriptions.filter((s) => matchesPattern(s.pattern, event.type))
    yield* Effect.forEach(
      subscriptions,
      (subscription) =>
        enqueueEncoded(subscription.task, {
          id: row!.id,
          type: event.type,
          occurredAt: row!.occurred_at.toISOString(),
          orgId: tenant,
          data
        }),
      { discard: true }
    )
    return { id: row!.id, type: event.type, subscribers: subscriptions.length }
  }).pipe(
    // Joins the caller's transaction (as a savepoint) or opens one, so the outbox row and its
    // jobs are never written apart.
    (effect) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(effect)),
    traced("events.publish", { attributes: { "event.type": event.type } })
  )
