import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Option, Schema } from "effect"
import { CurrentActor } from "./Actor.ts"

/**
 * The organisation the current work belongs to. Requests set it from the authenticated
 * actor; jobs set it from their envelope, so work a request enqueues runs for the same org.
 */
export class CurrentTenant extends Context.Reference<CurrentTenant>()("trellis/CurrentTenant", {
  defaultValue: (): Option.Option<string> => Option.none()
}) {}

export class NoTenant extends Schema.TaggedError<NoTenant>()("NoTenant", { message: Schema.String }) {}

/** The role tenant work runs as: not the owner of any table, so row-level security binds it. */
export const TENANT_ROLE = "trellis_app"

/**
 * Runs `effect` in a transaction (a savepoint when one is open) scoped to `orgId`: the
 * transaction sets `app.org_id` and switches to the tenant role, so every tenant table's
 * row-level security policy shows and accepts only that org's rows, even to a query that
 * forgets its `where org_id = ...`.
 */
export const inTenant = <A, E, R>(
  orgId: string,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      sql`select set_config('app.org_id', ${orgId}, true), set_config('role', ${TENANT_ROLE}, true)`.pipe(
        Effect.zipRight(Effect.provideService(effect, CurrentTenant, Option.some(orgId)))
      )
    )
  )

/** The current tenant: set explicitly (jobs), else the authenticated actor's org. */
export const currentOrgId = Effect.gen(function* () {
  const tenant = yield* CurrentTenant
  if (Option.isSome(tenant)) return tenant
  const actor = yield* Effect.serviceOption(CurrentActor)
  return Option.flatMap(actor, (a) => a.orgId)
})

/** `inTenant` for the current tenant (the request's actor's org, or the job's); fails without one. */
export const withTenant = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError | NoTenant, R | SqlClient.SqlClient> =>
  Effect.flatMap(currentOrgId, (tenant) =>
    Option.match(tenant, {
      onNone: (): Effect.Effect<A, E | SqlError | NoTenant, R | SqlClient.SqlClient> =>
        Effect.fail(new NoTenant({ message: "this operation needs an organisation (tenant)" })),
      onSome: (orgId) => inTenant(orgId, effect)
    })
  )
