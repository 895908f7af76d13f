import { HttpApiSchema } from "@effect/platform"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, type Effect, Schema } from "effect"

export class InsufficientStock extends Schema.TaggedError<InsufficientStock>()(
  "InsufficientStock",
  { message: Schema.String, sku: Schema.String, requested: Schema.Number, available: Schema.Number },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class UnknownSku extends Schema.TaggedError<UnknownSku>()(
  "UnknownSku",
  { message: Schema.String, sku: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export interface StockLine {
  readonly sku: string
  readonly quantity: number
}

/**
 * Stock reservations for another plugin's documents (an order), by reference. The inventory
 * plugin implements it; orders use it without importing inventory. Every method runs on the
 * CURRENT SQL connection for the current tenant, so a reservation commits or rolls back with
 * the caller's transaction: all lines are reserved, or none.
 */
export class StockReservations extends Context.Tag("trellis/StockReservations")<
  StockReservations,
  {
    readonly reserve: (
      reference: string,
      lines: ReadonlyArray<StockLine>,
      options?: { readonly expiresAt?: Date }
    ) => Effect.Effect<void, InsufficientStock | UnknownSku | SqlError>
    /** Gives the reserved quantities back (an order cancelled). */
    readonly release: (reference: string) => Effect.Effect<void, SqlError>
    /** Turns the reservation into a shipment: on-hand stock goes down (an order shipped). */
    readonly commit: (reference: string) => Effect.Effect<void, SqlError>
  }
>() {}
