import { HttpServer } from "@effect/platform"
import { Duration, Effect, Exit, Layer, Option, Redacted, Schema, Scope } from "effect"
import Fastify from "fastify"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import pg from "pg"
import { inTenant } from "../../core/Tenancy.ts"
import { layerTracing } from "../../core/Tracing.ts"
import { IdentityOptions } from "../../plugins/identity/Domain.ts"
import { identity } from "../../plugins/identity/index.ts"
import { inventory } from "../../plugins/inventory/index.ts"
import { ops } from "../../plugins/ops/index.ts"
import { orders } from "../../plugins/orders/index.ts"
import { SUMMARY_COLUMNS } from "../../plugins/orders/Repo.ts"
import { layerApp, layerLogger, type AppSetup } from "../../runtime/App.ts"
import type { AppConfig } from "../../runtime/Config.ts"
import { layerHttp } from "../../runtime/Http.ts"
import { seedOrders } from "../plugins/orders/seed.ts"
import { adminUrl, autocannon, benchConfig, benchDatabase, dropDatabasesOnSignal, type HttpResult, printTable, withAdmin as admin } from "./support.ts"

/**
 * Orders: on one fresh database, with production's defaults (tracer off, memory cache and rate
 * limiter, pool of 20) except no log and a rate limit the load cannot reach:
 * - `GET /api/v1/orders?status=PLACED&limit=50` over 100,000 orders (20,000 PLACED), on the
 *   full app (API key checked by the identity plugin, tenant transaction, metrics) and on a
 *   minimal Fastify + pg handler running the same SELECT with the org as a parameter; also
 *   Fastify wrapping that SELECT in the same tenant transaction Trellis uses, to show what
 *   tenancy costs. autocannon (its own process), 50 connections, 10 s each after a warm-up;
 *   Trellis and Fastify in two alternating rounds, the better of each reported.
 * - placement: 20 clients placing one-line orders of random skus (of 1,000) for 10 s, against
 *   pgbench's simple-update transaction (`-N`, 20 clients) on the same server.
 * The servers run in this process one at a time; the load generators run beside it on the
 * same cores, as they would on any one-machine run. CPU time per request is this process's,
 * so it holds whatever else the machine is doing. Then Trellis layer by layer (no auth, API
 * key only, plus a tenant transaction) shows where its time goes.
 */

const ORDERS = 100_000
const SKUS = 1_000
const CONNECTIONS = 50
const DURATION_S = 10
const WARMUP_S = 2
const PLACEMENT_CLIENTS = 20
const POOL_MAX = 20
const LIST_PATH = "/api/v1/orders?status=PLACED&limit=50"
const PGBENCH_SCALE = 10
const ROUNDS = 2

/** The list load: CONNECTIONS for DURATION_S after a WARMUP_S warm-up of the same shape. */
const load = (headers: Record<string, string>) => ({ connections: CONNECTIONS, seconds: DURATION_S, warmupSeconds: WARMUP_S, headers })

const OPERATOR_KEY = `bench-operator-${randomBytes(12).toString("hex")}`

const execFileAsync = promisify(execFile)

/** The SELECT Trellis's repository sends for this list (first page, no cursor), with the org explicit. */
const LIST_SQL = `
  select ${SUMMARY_COLUMNS}, (o.created_at)::text as sort_key
    from orders.orders o
   where o.org_id = $1 and o.status = $2
   order by o.created_at desc, o.id desc
   limit 51`

type ListRow = {
  readonly [K in "id" | "channel" | "external_id" | "status" | "customer_name" | "customer_phone" | "currency" | "total"
    | "created_at" | "updated_at" | "sort_key"]: string
} & { readonly customer_email: string | null; readonly item_count: number }

const toJson = (rows: ReadonlyArray<ListRow>) => {
  const page = rows.slice(0, 50)
  const last = page[page.length - 1]
  return {
    items: page.map((r) => ({
      id: r.id,
      channel: r.channel,
      externalId: r.external_id,
      status: r.status,
      customer: { name: r.customer_name, phone: r.customer_phone, email: r.customer_email },
      currency: r.currency,
      total: Number(r.total),
      itemCount: r.item_count,
      createdAt: r.created_at,
      updatedAt: r.updated_at
    })),
    nextCursor: rows.length > 50 && last ? Buffer.from(JSON.stringify(["-createdAt", last.sort_key, last.id])).toString("base64url") : null
  }
}

/** The baseline: Fastify and a pg pool of the same size; optionally the same tenant transaction as Trellis. */
const fastifySide = async (side: string, url: string, orgId: string, tenantTransaction: boolean) => {
  const pool = new pg.Pool({ connectionString: url, max: POOL_MAX })
  const app = Fastify({ logger: false })
  app.get("/api/v1/orders", async (request) => {
    const status = (request.query as { status?: string }).status ?? "PLACED"
    if (!tenantTransaction) return toJson((await pool.query<ListRow>(LIST_SQL, [orgId, status])).rows)
    const client = await pool.connect()
    try {
      await client.query("begin")
      await client.query("select set_config('app.org_id', $1, true), set_config('role', 'trellis_app', true)", [orgId])
      const rows = (await client.query<ListRow>(LIST_SQL, [orgId, status])).rows
      await client.query("commit")
      return toJson(rows)
    } finally {
      client.release()
    }
  })
  const address = await app.listen({ port: 0, host: "127.0.0.1" })
  try {
    return await autocannon(side, `${address}${LIST_PATH}`, load({}))
  } finally {
    await app.close()
    await pool.end()
  }
}

// Plain JavaScript run by `node -e` in a process of its own, so this process's CPU time is the
// server's. Each client places orders one after another (keep-alive fetch) until the deadline,
// then the process prints counts and latencies as JSON.
const placementClients = `
const { url, key, clients, durationMs, skus } = JSON.parse(process.env.PLACEMENT)
const latencies = []
const statuses = {}
let sequence = 0
const deadline = performance.now() + durationMs
const client = async (n) => {
  while (performance.now() < deadline) {
    const sku = "SKU-" + Math.floor(Math.random() * skus)
    const body = JSON.stringify({
      channel: "website",
      externalId: "bench-" + n + "-" + (++sequence),
      customer: { name: "Bench Buyer", phone: "+1 555 0100", email: "buyer@example.com" },
      items: [{ sku, name: "Item " + sku, qty: 1, price: 1999 }],
      currency: "USD"
    })
    const start = performance.now()
    const response = await fetch(url, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body })
    await response.arrayBuffer()
    latencies.push(performance.now() - start)
    statuses[response.status] = (statuses[response.status] || 0) + 1
  }
}
const started = performance.now()
Promise.all(Array.from({ length: clients }, (_, n) => client(n))).then(() => {
  latencies.sort((a, b) => a - b)
  const at = (p) => latencies[Math.max(0, Math.ceil(p * latencies.length) - 1)] || 0
  console.log(JSON.stringify({ seconds: (performance.now() - started) / 1000, statuses, p50: at(0.5), p99: at(0.99) }))
})
`

interface PlacementResult {
  readonly seconds: number
  readonly statuses: Record<string, number>
  readonly p50: number
  readonly p99: number
}

const place = async (url: string, key: string) => {
  const cpu = process.cpuUsage()
  const { stdout } = await execFileAsync(process.execPath, ["-e", placementClients], {
    env: { ...process.env, PLACEMENT: JSON.stringify({ url, key, clients: PLACEMENT_CLIENTS, durationMs: DURATION_S * 1000, skus: SKUS }) },
    maxBuffer: 16 * 1024 * 1024
  })
  const used = process.cpuUsage(cpu)
  const result = JSON.parse(stdout) as PlacementResult
  return { ...result, cpuPerOrder: (used.user + used.system) / 1000 / Math.max(1, result.statuses["201"] ?? 0) }
}

/** pgbench's simple-update transaction (`-N`, scale 10) with 20 clients on the same server; its own tables. */
const pgbench = async (url: string) => {
  try {
    await execFileAsync("pgbench", ["-i", "-s", String(PGBENCH_SCALE), "-q", url], { maxBuffer: 16 * 1024 * 1024 })
    const { stdout } = await execFileAsync("pgbench", ["-N", "-n", "-c", String(PLACEMENT_CLIENTS), "-j", "2", "-T", String(DURATION_S), url])
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1]
    return tps === undefined ? Option.none<number>() : Option.some(Number(tps))
  } catch (error) {
    console.log(`pgbench could not run (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): no database baseline`)
    return Option.none<number>()
  }
}

const call = async (base: string, method: string, path: string, headers: Record<string, string>, body?: unknown) => {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`)
  return JSON.parse(text) as Record<string, unknown>
}

/**
 * An org and an API key of it, the way a customer gets one: the operator creates the org and
 * its owner, the owner logs in and creates the key (as tests/support/tenants.ts does, which a
 * benchmark cannot import: it pulls in vitest).
 */
const createTenant = async (base: string, permissions: ReadonlyArray<string>) => {
  const owner = { email: `owner-${randomBytes(4).toString("hex")}@bench.test`, password: `bench-password-${randomBytes(8).toString("hex")}` }
  const org = await call(base, "POST", "/api/v1/identity/orgs", { "x-api-key": OPERATOR_KEY }, { name: "bench", owner })
  const session = await call(base, "POST", "/api/v1/identity/login", {}, { ...owner, org: org.id })
  const key = await call(base, "POST", "/api/v1/identity/api-keys", { authorization: `Bearer ${session.accessToken}` }, { name: "bench", permissions })
  return { orgId: String(org.id), apiKey: String(key.key), headers: { "x-api-key": String(key.key) } }
}

/** Production's defaults (effect.config.ts and environment left out) with the benchmark's changes. */
const trellisConfig = (dataDir: string): Promise<AppConfig> =>
  benchConfig((defaults) => ({
    dataDir,
    port: 0,
    databasePoolMax: POOL_MAX,
    adminApiKey: Option.some(Redacted.make(OPERATOR_KEY)),
    // Failed requests are counted by autocannon (the `failed` column). The log would only
    // repeat, as errors, the requests autocannon abandons mid-flight when it stops.
    logLevel: "None",
    shutdownTimeout: Duration.seconds(5),
    rateLimits: { ...defaults.rateLimits, authenticated: { limit: 100_000_000, windowSeconds: 60 } }
  }))

/** The app as `npm run serve` composes it (HTTP only), on a free port. */
const trellisLayer = (config: AppConfig, url: string) => {
  const setup: AppSetup = {
    config,
    plugins: [
      identity.make(Schema.decodeUnknownSync(IdentityOptions)({})),
      inventory.make({ expirySchedule: "* * * * *" }),
      orders.make({ channels: [] }),
      ops.make({ retentionDays: 30, pruneSchedule: "17 3 * * *" })
    ],
    databaseUrl: Redacted.make(url),
    adminApiKey: config.adminApiKey
  }
  return layerHttp({
    port: 0,
    host: config.host,
    maxBodySize: config.maxBodySize,
    corsOrigins: config.corsOrigins,
    plugins: setup.plugins
  }).pipe(
    Layer.provideMerge(layerApp(setup)),
    Layer.provide(layerTracing({ endpoint: undefined, serviceName: config.serviceName, sampleRatio: 1 })),
    Layer.provide(layerLogger(config))
  )
}

/**
 * 1,000 skus with plenty of stock at one location, written directly (platform work, org
 * explicit) with the totals the inventory plugin keeps: on-hand of the item = its stock rows.
 * Then fresh statistics for the whole database, seeded orders included.
 */
const stockSkus = async (url: string, orgId: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(
      `with location as (
         insert into inventory.locations (org_id, code, name) values ($1, 'main', 'Main') returning id
       ), item as (
         insert into inventory.items (org_id, sku, name, unit, reorder_threshold, on_hand, low_stock)
         select $1, 'SKU-' || i, 'Item ' || i, 'each', 0, 1000000, false from generate_series(0, $2::int - 1) as i
         returning id
       )
       insert into inventory.stock (org_id, item_id, location_id, on_hand)
       select $1, item.id, location.id, 1000000 from item, location`,
      [orgId, SKUS]
    )
    await client.query("vacuum analyze")
  } finally {
    await client.end()
  }
}

const fmt = (n: number, digits = 0) => n.toFixed(digits)

export const run = () =>
  dropDatabasesOnSignal(async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "trellis-bench-orders-"))
    const scope = Effect.runSync(Scope.make())
    let database: Awaited<ReturnType<typeof benchDatabase>> | undefined
    try {
      const version = await admin((c) => c.query<{ server_version: string }>("show server_version"))
      console.log(
        `orders: ${ORDERS} orders, list ${LIST_PATH} with ${CONNECTIONS} connections for ${DURATION_S} s each; placement with ` +
          `${PLACEMENT_CLIENTS} clients over ${SKUS} skus for ${DURATION_S} s; pool ${POOL_MAX}; PostgreSQL ` +
          `${version.rows[0]?.server_version} at ${new URL(adminUrl).host}; node ${process.version}, ${availableParallelism()} cores`
      )
      database = await benchDatabase()
      const url = database.url

      const config = await trellisConfig(dataDir)
      const context = await Effect.runPromise(Layer.buildWithScope(trellisLayer(config, url), scope))
      const runInApp = <A, E>(effect: Effect.Effect<A, E, Layer.Layer.Success<ReturnType<typeof trellisLayer>>>) =>
        Effect.runPromise(Effect.provide(effect, context))
      const server = await runInApp(HttpServer.HttpServer)
      if (server.address._tag !== "TcpAddress") throw new Error("expected a TCP server")
      const base = `http://127.0.0.1:${server.address.port}`
      const tenant = await createTenant(base, ["orders:read", "orders:write", "inventory:read", "ops:read"])

      const seedStart = performance.now()
      await runInApp(inTenant(tenant.orgId, seedOrders(ORDERS, new Date())))
      await stockSkus(url, tenant.orgId)
      console.log(`seeded ${ORDERS} orders and ${SKUS} stocked skus in ${fmt((performance.now() - seedStart) / 1000, 1)} s`)

      // Two alternating rounds, each side's better one kept: what runs first after the bulk load
      // (checkpoints, a busy neighbour) should not decide the ratio.
      const rounds: Array<readonly [HttpResult, HttpResult]> = []
      for (let round = 0; round < ROUNDS; round++) {
        rounds.push([
          await fastifySide("fastify", url, tenant.orgId, false),
          await autocannon("trellis", `${base}${LIST_PATH}`, load(tenant.headers))
        ])
      }
      const best = (side: 0 | 1) => rounds.map((r) => r[side]).reduce((a, b) => (b.requestsPerSecond > a.requestsPerSecond ? b : a))
      const fastify = best(0)
      const trellis = best(1)
      const fastifyTenant = await fastifySide("fastify + tenant tx", url, tenant.orgId, true)
      printTable([trellis, fastify, fastifyTenant])
      // Where Trellis's time goes: the same server answering less and less of the list's work.
      console.log("trellis, layer by layer:")
      printTable([
        await autocannon("/healthz (no auth)", `${base}/healthz`, load({})),
        await autocannon("+ API key (ops/health)", `${base}/api/v1/ops/health`, load(tenant.headers)),
        await autocannon("+ tenant tx (1 location)", `${base}/api/v1/inventory/locations`, load(tenant.headers)),
        { ...trellis, side: "+ 50-row list" }
      ])

      const placed = await place(`${base}/api/v1/orders`, tenant.apiKey)
      const created = placed.statuses["201"] ?? 0
      const perSecond = created / placed.seconds
      console.log(
        `placement: ${fmt(perSecond)} orders/s (${created} placed, statuses ${JSON.stringify(placed.statuses)}), ` +
          `p50 ${fmt(placed.p50, 1)} ms, p99 ${fmt(placed.p99, 1)} ms, server cpu ${fmt(placed.cpuPerOrder, 2)} ms/order`
      )
      const tps = await pgbench(url)
      if (Option.isSome(tps)) {
        console.log(`pgbench -N (simple update, ${PLACEMENT_CLIENTS} clients): ${fmt(tps.value)} tps`)
        console.log(`placement: trellis/pgbench = ${fmt(perSecond / tps.value, 2)}`)
      }
      console.log(`orders: trellis/fastify = ${fmt(trellis.requestsPerSecond / fastify.requestsPerSecond, 2)}`)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await database?.drop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
