import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option, Redacted } from "effect"
import { readFile } from "node:fs/promises"
import { layerPool, layerSql } from "../../core/Database.ts"
import { CurrentTenant, inTenant, tenantStatement } from "../../core/Tenancy.ts"
import { testDatabase } from "../support/database.ts"

const ORG_A = "0b7c4a52-51f4-4a47-9a41-0a6f1d1f0001"
const ORG_B = "0b7c4a52-51f4-4a47-9a41-0a6f1d1f0002"

/** A migrated database with one tenant table under row-level security, on a pool of ONE connection (what one statement leaves behind, the next one sees). */
const withSql = <A, E>(body: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const db = yield* testDatabase()
      const layer = layerSql.pipe(Layer.provideMerge(layerPool({ url: Redacted.make(db.url), max: 1 })))
      return yield* Effect.provide(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql`create table public.notes (id serial primary key, org_id uuid not null, body text not null)`
          yield* sql`select core.enable_tenant_rls('public.notes')`
          yield* sql`grant select, insert on public.notes to trellis_app`
          yield* sql`insert into public.notes (org_id, body) values (${ORG_A}, 'a1'), (${ORG_A}, 'a2'), (${ORG_B}, 'b1')`
          return yield* body
        }),
        layer
      )
    })
  )

const asOrg = (orgId: string) => Effect.provideService(CurrentTenant, Option.some(orgId))

describe("tenant statements", () => {
  it.live("see only the tenant's rows without a where clause, in one statement whose settings end with it", () =>
    withSql(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* tenantStatement(sql<{ body: string }>`select body from public.notes order by body`).pipe(asOrg(ORG_A))
        expect(rows.map((r) => r.body)).toEqual(["a1", "a2"])
        const b = yield* tenantStatement(sql<{ body: string }>`select body from public.notes`).pipe(asOrg(ORG_B))
        expect(b.map((r) => r.body)).toEqual(["b1"])
        // The pool's one connection, right after: no org, no tenant role.
        const [after] = yield* sql<{ org: string | null; role: string }>`select current_setting('app.org_id', true) as org, current_user as role`
        expect(after!.org ?? "").toBe("")
        expect(after!.role).not.toBe("trellis_app")
      })
    )
  )

  it.live("bind values as parameters would: quotes, backslashes, numbers, booleans, null, dates, arrays, bytes, json", () =>
    withSql(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const at = new Date("2026-01-02T03:04:05.678Z")
        const query = () =>
          sql<{ t: string; n: number; f: number; b: boolean; z: string | null; d: Date; a: Array<string>; x: Buffer; j: unknown; c: number }>`
            select ${"it's a \\ back'slash $1"}::text as t, ${42}::int as n, ${1.5}::float8 as f, ${true}::boolean as b,
                   ${null}::text as z, ${at}::timestamptz as d, ${["x", "y'z", "w\\v"]}::text[] as a,
                   ${Buffer.from([0, 1, 254, 255])}::bytea as x, ${JSON.stringify({ k: "v'\\" })}::jsonb as j,
                   (select count(*)::int from public.notes where body = ${"a1"}) as c`
        const [inlined] = yield* tenantStatement(query()).pipe(asOrg(ORG_A))
        const [bound] = yield* inTenant(ORG_A, query())
        expect(inlined).toEqual(bound)
        expect(inlined!.t).toBe("it's a \\ back'slash $1")
        expect(inlined!.a).toEqual(["x", "y'z", "w\\v"])
        expect([...inlined!.x]).toEqual([0, 1, 254, 255])
        expect(inlined!.d.getTime()).toBe(at.getTime())
        expect(inlined!.c).toBe(1)
      })
    )
  )

  it.live("a value holding a NUL is bound, not inlined: PostgreSQL refuses it as an ordinary error and the connection lives on", () =>
    withSql(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const refused = yield* Effect.either(tenantStatement(sql`select ${"a\u0000b"}::text as t`).pipe(asOrg(ORG_A)))
        expect(refused._tag === "Left" && String((refused.left as { cause?: unknown }).cause)).toContain("0x00")
        const rows = yield* tenantStatement(sql<{ body: string }>`select body from public.notes where body = ${"a1"}`).pipe(asOrg(ORG_A))
        expect(rows).toEqual([{ body: "a1" }])
      })
    )
  )

  it.live("a failing statement rolls its settings back with it and leaves the connection usable", () =>
    withSql(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const failed = yield* Effect.either(tenantStatement(sql`select 1 / ${0}::int as boom`).pipe(asOrg(ORG_A)))
        expect(failed._tag).toBe("Left")
        const [after] = yield* sql<{ org: string | null; role: string }>`select current_setting('app.org_id', true) as org, current_user as role`
        expect(after!.org ?? "").toBe("")
        expect(after!.role).not.toBe("trellis_app")
      })
    )
  )

  it.live("inside an open tenant transaction it runs there; without a tenant it fails with NoTenant", () =>
    withSql(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* inTenant(
          ORG_B,
          Effect.gen(function* () {
            yield* sql`insert into public.notes (org_id, body) values (${ORG_B}, 'b2')`
            return yield* tenantStatement(sql<{ body: string }>`select body from public.notes order by body`)
          })
        )
        expect(rows.map((r) => r.body)).toEqual(["b1", "b2"])
        const none = yield* Effect.either(tenantStatement(sql`select 1`))
        expect(none._tag === "Left" && none.left._tag).toBe("NoTenant")
      })
    )
  )
})

describe("tenant policies", () => {
  /** Policies computing the org per row: an occurrence of current_org_id() outside a scalar subquery. */
  const perRow = (sql: SqlClient.SqlClient) =>
    Effect.map(
      sql<{ policy: string }>`
        select schemaname || '.' || tablename || ' ' || policyname as policy from pg_policies,
               lateral (select coalesce(qual, '') || ' ' || coalesce(with_check, '') as expressions) e
         where regexp_count(e.expressions, 'current_org_id\\(\\)') <> regexp_count(e.expressions, 'SELECT (core\\.)?current_org_id\\(\\)')
         order by 1`,
      (rows) => rows.map((r) => r.policy)
    )

  it.live("read the org once per statement (an initplan), in every table of every plugin, and the upgrade rewrites older ones", () =>
    withSql(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const tenantTables = yield* sql<{ n: number }>`select count(*)::int as n from pg_policies where policyname = 'tenant_isolation'`
        // core, identity, inventory, orders, webhooks, flags... and the test's own table.
        expect(tenantTables[0]!.n).toBeGreaterThan(10)
        expect(yield* perRow(sql)).toEqual([])
        const plan = yield* inTenant(
          ORG_A,
          sql<{ "QUERY PLAN": string }>`explain (costs off) select body from public.notes`
        )
        const text = plan.map((r) => r["QUERY PLAN"]).join("\n")
        expect(text).toContain("InitPlan")
        expect(text).not.toContain("current_setting")

        // A database migrated before: policies as enable_tenant_rls used to write them.
        yield* sql`alter policy tenant_isolation on public.notes using (org_id = core.current_org_id()) with check (org_id = core.current_org_id())`
        yield* sql`alter policy platform_access on identity.orgs
                     using (core.current_org_id() is null and current_user <> 'trellis_app')
                     with check (core.current_org_id() is null and current_user <> 'trellis_app')`
        expect(yield* perRow(sql)).toEqual(["identity.orgs platform_access", "public.notes tenant_isolation"])
        const upgrade = yield* Effect.promise(() => readFile(new URL("../../sql/core/0004_tenant_policies_read_org_once.sql", import.meta.url), "utf8"))
        // As the migration runner runs it: core first on the search path.
        yield* sql.unsafe(`set search_path to core, public; ${upgrade}; reset search_path`)
        expect(yield* perRow(sql)).toEqual([])
        // Still the same rules.
        const rows = yield* inTenant(ORG_A, sql<{ body: string }>`select body from public.notes order by body`)
        expect(rows.map((r) => r.body)).toEqual(["a1", "a2"])
        const refused = yield* Effect.either(inTenant(ORG_A, sql`insert into public.notes (org_id, body) values (${ORG_B}, 'x')`))
        expect(refused._tag).toBe("Left")
      })
    )
  )
})
