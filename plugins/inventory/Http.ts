import { HttpApiBuilder } from "@effect/platform"
import { DateTime, Effect } from "effect"
import { requirePermission } from "../../core/Auth.ts"
import { Forbidden } from "../../core/Errors.ts"
import { withTenant } from "../../core/Tenancy.ts"
import { InventoryApi } from "./Api.ts"
import { ItemsRepo } from "./Items.ts"
import { StockLedger } from "./Stock.ts"

/**
 * Checks the permission, then runs `effect` in a transaction of the caller's org. The
 * operator key has no org, so it gets a 403 here; database failures are 500s.
 */
const asTenant =
  (permission: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    requirePermission(permission).pipe(
      Effect.zipRight(withTenant(effect)),
      Effect.catchTag("NoTenant", () =>
        Effect.fail(new Forbidden({ message: "this route acts for an organisation: use a credential of one, not the operator key" }))
      ),
      Effect.catchTag("SqlError", Effect.die)
    )

const read = asTenant("inventory:read")
const write = asTenant("inventory:write")

export const InventoryHttp = HttpApiBuilder.group(InventoryApi, "inventory", (handlers) =>
  Effect.gen(function* () {
    const items = yield* ItemsRepo
    const ledger = yield* StockLedger
    return handlers
      .handle("listLocations", () => read(items.listLocations))
      .handle("createLocation", ({ payload }) => write(items.createLocation(payload)))
      .handle("listItems", ({ urlParams }) => read(items.list(urlParams)))
      .handle("createItem", ({ payload }) => write(items.create(payload)))
      .handle("getItem", ({ path }) => read(items.get(path.sku)))
      .handle("updateItem", ({ path, payload }) => write(items.update(path.sku, payload)))
      .handle("deleteItem", ({ path }) => write(items.remove(path.sku)))
      .handle("restoreItem", ({ path }) => write(items.restore(path.sku)))
      .handle("adjustmentLog", ({ path, urlParams }) => read(items.adjustmentLog(path.sku, urlParams)))
      .handle("adjust", ({ payload }) => write(ledger.adjust(payload)))
      .handle("reserve", ({ payload }) =>
        write(
          ledger
            .reserve(payload.reference, payload.lines, payload.expiresAt ? { expiresAt: DateTime.toDateUtc(payload.expiresAt) } : {})
            .pipe(Effect.zipRight(items.reservations(payload.reference)))
        )
      )
      .handle("reservations", ({ path }) => read(items.reservations(path.reference)))
      .handle("release", ({ path }) =>
        write(ledger.release(path.reference).pipe(Effect.zipRight(items.reservations(path.reference))))
      )
      .handle("commit", ({ path }) => write(ledger.commit(path.reference).pipe(Effect.zipRight(items.reservations(path.reference)))))
  })
)
