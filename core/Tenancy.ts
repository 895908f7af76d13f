import { SqlClient, type Statement } from "@effect/sql"
import pg from "pg"
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
type TenantWrapper = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>

const tenantTransactions = new WeakMap<SqlClient.SqlClient, (orgId: string) => TenantWrapper>()

/** Organisations whose transaction wrapper a process keeps (each is a handful of closures). */
const MAX_TENANT_WRAPPERS = 10_000

const tenantTransaction = (sql: SqlClient.SqlClient) => {
  let make = tenantTransactions.get(sql)
  if (make === undefined) {
    const acquireConnection = Effect.flatMap(Scope.make(), (scope) =>
      Effect.map(Scope.extend(sql.reserve, scope), (conn) => [scope, conn] as const)
    )
    const wrapperFor = (orgId: string) => {
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
    // Built once per organisation, not per request: the wrapper is a pure function of its
    // options. The oldest organisation makes room when the bound is reached.
    const byOrg = new Map<string, TenantWrapper>()
    make = (orgId: string) => {
      let wrap = byOrg.get(orgId)
      if (wrap === undefined) {
        wrap = wrapperFor(orgId)
        if (byOrg.size >= MAX_TENANT_WRAPPERS) byOrg.delete(byOrg.keys().next().value!)
        byOrg.set(orgId, wrap)
      }
      return wrap
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

const noTenant = () => new NoTenant({ message: "this operation needs an organisation (tenant)" })

/** `inTenant` for the current tenant (the request's actor's org, or the job's); fails without one. */
export const withTenant = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError | NoTenant, R | SqlClient.SqlClient> =>
  Effect.flatMap(currentOrgId, (tenant) =>
    Option.match(tenant, {
      onNone: (): Effect.Effect<A, E | SqlError | NoTenant, R | SqlClient.SqlClient> =>
        Effect.fail(noTenant()),
      onSome: (orgId) => inTenant(orgId, effect)
    })
  )

// node-postgres's own preparation of parameter values, exported as `utils` (absent from @types/pg).
const prepareValue = (pg as unknown as { utils: { prepareValue: (value: unknown) => string | Buffer | null } }).utils.prepareValue

/**
 * Inlines the bound values of a compiled statement as string literals: what Postgres does
 * with an untyped parameter it does with an untyped literal (the context types it). Values
 * are prepared as node-postgres prepares parameters. `undefined` when the text holds anything
 * a placeholder scan could misread, so the caller binds instead.
 */
const inlineParameters = (text: string, params: ReadonlyArray<unknown>): string | undefined => {
  // Dollar quoting, comments and E'' strings (backslash escapes) are left to real binding.
  if (/(^|[^A-Za-z0-9_])[eE]'/.test(text)) return undefined
  if (/\$[A-Za-z_$]|--|\/\*/.test(text.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"/g, "''"))) return undefined
  let out = ""
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    if (c === "'" || c === '"') {
      // A quoted string or identifier, copied whole (a doubled quote stays inside).
      let j = i + 1
      while (j < text.length && !(text[j] === c && text[j + 1] !== c)) j += text[j] === c ? 2 : 1
      out += text.slice(i, j + 1)
      i = j + 1
    } else if (c === "$" && /[0-9]/.test(text[i + 1] ?? "")) {
      let j = i + 1
      while (/[0-9]/.test(text[j] ?? "")) j++
      const index = Number(text.slice(i + 1, j)) - 1
      if (index < 0 || index >= params.length) return undefined
      const value = prepareValue(params[index])
      const literal = value === null ? null : Buffer.isBuffer(value) ? `\\x${value.toString("hex")}` : String(value)
      // A NUL would end the protocol's query string early: such a value is bound instead
      // (where PostgreSQL refuses it as an ordinary error).
      if (literal !== null && literal.includes("\u0000")) return undefined
      out += literal === null ? "NULL" : pg.escapeLiteral(literal)
      i = j
    } else {
      out += c
      i++
    }
  }
  return out
}

/**
 * One statement for the current tenant in ONE round trip: the tenant settings and the
 * statement travel as one simple-protocol message, which Postgres runs as one implicit
 * transaction, so the settings hold for the statement and end with it (on error too). For
 * hot single-statement reads; three round trips (begin, statement, commit) become one. Inside
 * an open transaction, or when the statement cannot be inlined, it runs as `withTenant` would.
 * The client's row transforms are not applied (Trellis configures none).
 */
export const tenantStatement = <A extends object>(
  statement: Statement.Statement<A>
): Effect.Effect<ReadonlyArray<A>, SqlError | NoTenant, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const orgId = yield* currentOrgId
    if (Option.isNone(orgId)) return yield* noTenant()
    const sql = yield* SqlClient.SqlClient
    const open = yield* Effect.serviceOption(SqlClient.TransactionConnection)
    const inlined = Option.isNone(open) && UUID.test(orgId.value) ? inlineParameters(...statement.compile()) : undefined
    if (inlined === undefined) return yield* inTenant(orgId.value, statement)
    const results = (yield* sql.unsafe(`${tenantSettings(orgId.value)}; ${inlined}`).withoutTransform) as unknown as ReadonlyArray<ReadonlyArray<A>>
    return results[1]!
  })
