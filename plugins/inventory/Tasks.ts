import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import { defineTask } from "../../core/Jobs.ts"
import type { CronItem } from "../../core/Plugin.ts"
import type { InventoryOptions } from "./Domain.ts"
import { StockLedger } from "./Stock.ts"

export const makeTasks = (options: InventoryOptions) => {
  /** Platform work over every org, in batches of one transaction each, until nothing expired is left. */
  const expireReservations = defineTask({
    id: "inventory.expire_reservations",
    payload: Schema.Struct({}),
    retry: { maxAttempts: 3 },
    handler: () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const ledger = yield* StockLedger
        let released = 0
        for (;;) {
          const batch = yield* sql.withTransaction(ledger.expire)
          if (batch === 0) break
          released += batch
        }
        if (released > 0) yield* Effect.logInfo("released expired reservations").pipe(Effect.annotateLogs({ released }))
      })
  })
  const cron: ReadonlyArray<CronItem> = [
    { id: "inventory.expire_reservations", schedule: options.expirySchedule, task: expireReservations, payload: {} }
  ]
  return { expireReservations, cron }
}
