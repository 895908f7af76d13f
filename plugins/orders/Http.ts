import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer } from "effect"
import { CurrentActor, requirePermission } from "../../core/Auth.ts"
import { Forbidden } from "../../core/Errors.ts"
import { requireFlag } from "../../core/FeatureGate.ts"
import { encodedJson } from "../../core/Responses.ts"
import { withTenant } from "../../core/Tenancy.ts"
import { OrdersApi } from "./Api.ts"
import { OrderPage } from "./Domain.ts"
import { OrdersService } from "./Orders.ts"
import { OrdersRepo } from "./Repo.ts"

/**
 * Checks the permission, then runs `effect` in a transaction of the caller's org. The
 * operator key has no org, so it gets a 403 here; database failures are 500s.
 */
const asTenant =
  (permission: string, transaction = true) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    requirePermission(permission).pipe(
      Effect.zipRight(transaction ? withTenant(effect) : effect),
      Effect.catchTag("NoTenant", () =>
        Effect.fail(new Forbidden({ message: "this route acts for an organisation: use a credential of one, not the operator key" }))
      ),
      Effect.catchTag("SqlError", Effect.die)
    )

const read = asTenant("orders:read")
/** For reads that are one `tenantStatement` (the list): no transaction around it. */
const readStatement = asTenant("orders:read", false)
const write = asTenant("orders:write")

const orderPage = encodedJson(OrderPage)

const actorRef = Effect.map(CurrentActor, (actor) => ({ kind: actor.kind, id: actor.id }))

const OrdersHandlers = HttpApiBuilder.group(OrdersApi, "orders", (handlers) =>
  Effect.gen(function* () {
    const orders = yield* OrdersService
    const repo = yield* OrdersRepo
    return handlers
      .handle("create", ({ payload }) =>
        write(
          // The org's kill switch: a flag `orders.placement` switched off refuses new orders (503).
          requireFlag("orders.placement").pipe(
            Effect.zipRight(actorRef),
            Effect.flatMap((actor) => orders.place(payload.channel, payload, actor))
          )
        )
      )
      // The page is built field by field from typed columns: sent as it is, not re-encoded.
      .handleRaw("list", ({ urlParams }) => Effect.map(readStatement(orders.list(urlParams)), orderPage))
      .handle("channels", () => read(repo.channelStates))
      .handle("get", ({ path }) => read(orders.get(path.id)))
      .handle("changeStatus", ({ path, payload }) =>
        write(Effect.flatMap(actorRef, (actor) => orders.transition(path.id, payload.status, actor, payload.note ?? null)))
      )
  })
)

/** The routes with the service they use, built on the app's core services and plugin layers. */
export const OrdersHttp = OrdersHandlers.pipe(
  Layer.provide(OrdersService.DefaultWithoutDependencies.pipe(Layer.provideMerge(OrdersRepo.Default)))
)
