import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { recordAudit } from "../../core/Audit.ts"
import { BadRequest, NotFound } from "../../core/Errors.ts"
import { EventRegistry, publish, type EventType } from "../../core/Events.ts"
import { StockReservations } from "../../core/Stock.ts"
import {
  DuplicateOrder,
  IllegalTransition,
  NEXT_STATUSES,
  type ListOrdersParams,
  type Order,
  type OrderInput,
  type OrderStatus
} from "./Domain.ts"
import { OrderCancelled, OrderCreated, OrderStatusChanged } from "./Events.ts"
import { OrdersRepo, type ActorRef } from "./Repo.ts"
import { traced } from "../../core/Tracing.ts"

/** The total of the items in minor units; a client total that disagrees is a 400. */
const computeTotal = (input: OrderInput) => {
  const total = input.items.reduce((sum, item) => sum + item.qty * item.price, 0)
  if (input.total !== undefined && input.total !== total) {
    return Effect.fail(
      new BadRequest({ message: `total ${input.total} does not match the items, which add up to ${total}`, field: "total" })
    )
  }
  return Effect.succeed(total)
}

const notFound = (id: string) => new NotFound({ message: `order ${id} not found`, resource: "order", id })

/**
 * Placing orders and moving them through their lifecycle. Every method runs on the current
 * connection: callers wrap them in a tenant transaction (`withTenant` / `inTenant`), so an
 * order, its stock reservation, its history and its events commit together or not at all.
 *
 * Built where it is used (routes, tasks) rather than as the plugin's layer: it needs core's
 * StockReservations, which another plugin's layer provides.
 */
export class OrdersService extends Effect.Service<OrdersService>()("orders/OrdersService", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* OrdersRepo
    const stock = yield* StockReservations
    const events = yield* EventRegistry

    const emit = <T extends string, A, I>(event: EventType<T, A, I>, payload: A) =>
      publish(event, payload).pipe(
        Effect.catchTags({ ParseError: Effect.die, UnknownEventType: Effect.die }),
        Effect.provideService(EventRegistry, events),
        Effect.provideService(SqlClient.SqlClient, sql)
      )

    const get = (id: string) =>
      repo.get(id).pipe(Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound(id)), onSome: Effect.succeed })))

    /**
     * Writes the order and reserves stock for every line; fails with 409 (a duplicate
     * external id, unknown sku or too little stock) having written nothing, as long as the
     * caller's transaction rolls back on failure, which `withTenant` does.
     */
    const place = (channel: string, input: OrderInput, actor: ActorRef, note: string | null = null) =>
      Effect.gen(function* () {
        const total = yield* computeTotal(input)
        const id = randomUUID()
        const inserted = yield* repo.insert(id, channel, input, total, actor, note)
        if (Option.isNone(inserted)) {
          const existing = yield* repo.idOf(channel, input.externalId)
          return yield* new DuplicateOrder({
            message: `order ${input.externalId} of channel ${channel} exists already`,
            channel,
            externalId: input.externalId,
            orderId: Option.getOrElse(existing, () => "")
          })
        }
        yield* stock.reserve(
          id,
          input.items.map((item) => ({ sku: item.sku, quantity: item.qty }))
        )
        yield* emit(OrderCreated, {
          orderId: id,
          channel,
          externalId: input.externalId,
          currency: input.currency,
          total,
          items: input.items.map((i) => ({ sku: i.sku, qty: i.qty, price: i.price }))
        })
        // Everything the order is was just written from `input`: no need to read it back.
        const createdAt = inserted.value.toISOString()
        const order: Order = {
          id,
          channel,
          externalId: input.externalId,
          status: "PLACED",
          customer: { name: input.customer.name, phone: input.customer.phone, email: input.customer.email ?? null },
          currency: input.currency,
          total,
          itemCount: input.items.length,
          createdAt,
          updatedAt: createdAt,
          items: input.items.map((i) => ({ sku: i.sku, name: i.name, qty: i.qty, price: i.price, lineTotal: i.qty * i.price })),
          history: [{ from: null, to: "PLACED", actor, note, at: createdAt }]
        }
        return order
      }).pipe(traced("OrdersService.place"))

    /**
     * Moves an order to `to` under a lock on its row, so two concurrent changes are
     * serialised and the second sees the first's result. Cancelling gives the reserved stock
     * back; shipping turns the reservation into a shipment.
     */
    const transition = (id: string, to: OrderStatus, actor: ActorRef, note: string | null) =>
      Effect.gen(function* () {
        const current = yield* repo.lockStatus(id)
        if (Option.isNone(current)) return yield* notFound(id)
        const from = current.value
        if (!NEXT_STATUSES[from].includes(to)) {
          const allowed = NEXT_STATUSES[from]
          return yield* new IllegalTransition({
            message: `order ${id} cannot go from ${from} to ${to}${allowed.length > 0 ? `; from ${from} it can go to ${allowed.join(" or ")}` : `; ${from} is final`}`,
            orderId: id,
            from,
            to
          })
        }
        yield* repo.setStatus(id, from, to, actor, note)
        if (to === "CANCELLED") yield* stock.release(id)
        if (to === "SHIPPED") yield* stock.commit(id)
        yield* emit(OrderStatusChanged, { orderId: id, from, to, note })
        if (to === "CANCELLED") yield* emit(OrderCancelled, { orderId: id, from, note })
        yield* recordAudit({
          action: "orders.status_changed",
          targetType: "order",
          targetId: id,
          details: { from, to, ...(note === null ? {} : { note }) }
        }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
        return yield* get(id).pipe(Effect.catchTag("NotFound", Effect.die))
      }).pipe(traced("OrdersService.transition"))

    const list = (params: ListOrdersParams) => repo.list(params)

    return { place, transition, get, list } as const
  }),
  dependencies: [OrdersRepo.Default]
}) {}
