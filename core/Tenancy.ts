import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Option, Schema, Scope } from "effect"
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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The tenant settings as one statement with the org inlined: `orgId` must be a UUID. */
const tenantSettings = (orgId: string) =>
  `select set_config('app.org_id', '${orgId}', true), set_config('role', '${TENANT_ROLE}', true)`

/**
 * A tenant transaction whose BEGIN (or SAVEPOINT) and settings travel as ONE simple-protocol
 * message: a tenant request pays three round trips (begin+settings, its statement, commit)
 * instead of four. Built once per SqlClient on @effect/sql's own transaction machinery, so
 * `sql.withTransaction` nested inside (or around) it shares the connection and savepoint
 * numbering.
 */
const tenantTransactions = new WeakMap<SqlClient.SqlClient, (orgId: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>>()

const tenantTransaction = (sql: SqlClient.SqlClient) => {
  let make = tenantTransactions.get(sql)
  if (make === undefined) {
    const acquireConnection = Effect.flatMap(Scope.make(), (scope) =>
      Effect.map(Scope.extend(sql.reserve, scope), (conn) => [scope, conn] as const)
    )
    make = (orgId: string) => {
      const settings = tenantSettings(orgId)
      return SqlClient.makeWithTransaction({
        transactionTag: SqlClient.TransactionConnection,
        spanAttributes: [],
        acquireConnection,
        begin: (conn) => conn.executeUnprepared(`BEGIN; ${settings}`, [], undefined),
        savepoint: (conn, id) => conn.executeUnprepared(`SAVEPOINT effect_sql_${id}; ${settings}`, [], undefined),
        commit: (conn) => conn.executeUnprepared("COMMIT", [], undefined),
        rollback: (conn) => conn.executeUnprepared("ROLLBACK", [], undefined),
        rollbackSavepoint: (conn, id) => conn.executeUnprepared(`ROLLBACK TO SAVEPOINT effect_sql_${id}`, [], undefined)
      })
    }
    tenantTransactions.set(sql, make)
  }
  return make
}

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
  Effect.flatMap(SqlClient.SqlClient, (sql) => {
    const scoped = Effect.provideService(effect, CurrentTenant, Option.some(orgId))
    // Org ids are UUIDs; anything else (never inlined into SQL) takes the parameterised path.
    if (UUID.test(orgId)) return tenantTransaction(sql)(orgId)(scoped)
    return sql.withTransaction(
      sql`select set_config('app.org_id', ${orgId}, true), set_config('role', ${TENANT_ROLE}, true)`.pipe(Effect.zipRight(scoped))
    )
  })

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
