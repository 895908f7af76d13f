import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Schema } from "effect"
import { createHash } from "node:crypto"
import { Authentication } from "../../core/Auth.ts"
import { definePlugin } from "../../core/Plugin.ts"
import { inTenant, withTenant } from "../../core/Tenancy.ts"
import { identity } from "../../plugins/identity/index.ts"
import { IdentityOptions } from "../../plugins/identity/Domain.ts"
import { ops } from "../../plugins/ops/index.ts"
import { baseUrl, testAppLayer } from "../support/app.ts"
import { createTenant } from "../support/tenants.ts"
import { autocannon, benchDatabase, type HttpResult, median, printTable } from "./support.ts"

/**
 * The same small tenant read (10 rows under row-level security, in a tenant transaction)
 * served anonymously (for a fixed org) and authenticated by a bearer JWT and by an API key:
 * the difference is what authentication costs.
 */
const CONNECTIONS = 50
const SECONDS = 5
const ROUNDS = 7
const WARMUP_SECONDS = 3

const Item = Schema.Struct({ id: Schema.Number, name: Schema.String })

class BenchApi extends HttpApi.make("benchauth")
  .add(HttpApiGroup.make("open").add(HttpApiEndpoint.get("items", "/open/:org").setPath(Schema.Struct({ org: Schema.UUID })).addSuccess(Schema.Array(Item))).prefix("/api/v1/benchauth"))
  .add(HttpApiGroup.make("guarded").add(HttpApiEndpoint.get("items", "/items").addSuccess(Schema.Array(Item))).middleware(Authentication).prefix("/api/v1/benchauth")) {}

const readItems = Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ id: number; name: string }>`select id, name from benchauth.items order by id limit 10`)

const BenchHttp = Layer.mergeAll(
  HttpApiBuilder.group(BenchApi, "open", (h) => h.handle("items", ({ path }) => Effect.orDie(inTenant(path.org, readItems)))),
  HttpApiBuilder.group(BenchApi, "guarded", (h) => h.handle("items", () => Effect.orDie(withTenant(readItems))))
)

const migration = `
  create table items (id serial primary key, org_id uuid not null, name text not null);
  create index items_org_idx on items (org_id, id);
  select core.enable_tenant_rls('benchauth.items');`

const benchPlugin = definePlugin({
  name: "benchauth",
  api: BenchApi,
  http: BenchHttp,
  migrations: {
    load: Effect.succeed([{ id: 1, name: "items", sql: migration, checksum: createHash("sha256").update(migration).digest("hex") }])
  }
})

export const run = async () => {
  const db = await benchDatabase()
  try {
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const identityPlugin = identity.make(
            Schema.decodeUnknownSync(IdentityOptions)({ jwtSecret: "bench-secret-0123456789abcdefghijklmnop" })
          )
          const context = yield* Layer.build(
            testAppLayer({
              databaseUrl: db.url,
              plugins: [ops.make({ retentionDays: 30, pruneSchedule: "17 3 * * *" }), identityPlugin, benchPlugin],
              http: true,
              config: {
                rateLimits: {
                  authenticated: { limit: 100_000_000, windowSeconds: 60 },
                  anonymous: { limit: 100_000_000, windowSeconds: 60 },
                  plugins: {}
                }
              }
            })
          )
          const base = yield* Effect.provide(baseUrl, context)
          const tenant = yield* createTenant(base, { permissions: ["ops:read"] })
          const sql = yield* Effect.provide(SqlClient.SqlClient, context)
          yield* sql`insert into benchauth.items (org_id, name) select ${tenant.orgId}, 'item ' || n from generate_series(1, 50) n`
          const login = yield* Effect.promise(() =>
            fetch(`${base}/api/v1/identity/login`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ ...tenant.owner, org: tenant.orgId })
            }).then((r) => r.json() as Promise<{ accessToken: string }>)
          )
          const sides = [
            { side: "anonymous", url: `${base}/api/v1/benchauth/open/${tenant.orgId}`, headers: {} },
            { side: "bearer JWT", url: `${base}/api/v1/benchauth/items`, headers: { authorization: `Bearer ${login.accessToken}` } },
            { side: "API key", url: `${base}/api/v1/benchauth/items`, headers: { "x-api-key": tenant.apiKey } }
          ] as const
          // Alternating rounds, the median of each side kept: load drifting during one long
          // measurement of each side in turn decided the ratio before. Each round starts with
          // a different side, so none always runs right after the same neighbour.
          const results: Array<Array<HttpResult>> = [[], [], []]
          for (let round = 0; round < ROUNDS; round++) {
            for (let k = 0; k < sides.length; k++) {
              const i = (k + round) % sides.length
              const side = sides[i]!
              const options = { connections: CONNECTIONS, seconds: SECONDS, warmupSeconds: round === 0 ? WARMUP_SECONDS : 1, headers: side.headers }
              results[i]!.push(yield* Effect.promise(() => autocannon(side.side, side.url, options)))
            }
          }
          printTable(results.flatMap((rows) => rows.map((r, round) => ({ ...r, side: `${r.side} #${round + 1}` }))))
          const [anonymous, bearer, apiKey] = results.map((rows) => median(rows, (r) => r.requestsPerSecond)) as [HttpResult, HttpResult, HttpResult]
          console.log(`auth: the same 10-row tenant read, ${CONNECTIONS} connections, ${ROUNDS} alternating rounds of ${SECONDS} s per side; medians:`)
          printTable([anonymous, bearer, apiKey])
          const ratio = Math.min(bearer.requestsPerSecond, apiKey.requestsPerSecond) / anonymous.requestsPerSecond
          console.log(`bearer/anonymous = ${(bearer.requestsPerSecond / anonymous.requestsPerSecond).toFixed(2)}, api-key/anonymous = ${(apiKey.requestsPerSecond / anonymous.requestsPerSecond).toFixed(2)}`)
          console.log(`auth: authenticated/anonymous = ${ratio.toFixed(2)}`)
        })
      )
    )
  } finally {
    await db.drop()
  }
}
