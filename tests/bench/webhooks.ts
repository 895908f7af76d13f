import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import { run as runGraphileWorker, runMigrations } from "graphile-worker"
import { randomUUID } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { spawn } from "node:child_process"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import pg from "pg"
import { Webhook } from "standardwebhooks"
import { defineEvent, publish } from "../../core/Events.ts"
import { definePlugin } from "../../core/Plugin.ts"
import { buildRegistry } from "../../core/Registry.ts"
import { inTenant } from "../../core/Tenancy.ts"
import { layerTracing } from "../../core/Tracing.ts"
import { CreateEndpoint, WebhooksOptions } from "../../plugins/webhooks/Domain.ts"
import { makeWebhooks } from "../../plugins/webhooks/index.ts"
import { WebhooksService } from "../../plugins/webhooks/Service.ts"
import { layerApp, layerLogger, type AppSetup } from "../../runtime/App.ts"
import type { AppConfig } from "../../runtime/Config.ts"
import { layerWorker } from "../../runtime/Worker.ts"
import { adminUrl, benchConfig, cpuMicros, dropDatabasesOnSignal, printColumns, quietLogger, withAdmin as admin, withBenchDatabase, within } from "./support.ts"

/**
 * Signed webhook deliveries per second through Trellis (a fan-out job per event, batched runs
 * of the endpoint's due messages, HTTP POSTs to a receiver on 127.0.0.1, every attempt logged)
 * against raw graphile-worker no-op jobs per second, with the same worker settings and pool,
 * each side on a fresh database.
 */

const EVENTS = 5_000
const NOOP_JOBS = 20_000
const CONCURRENCY = 10
const LOCAL_QUEUE_SIZE = 500
const POOL_MAX = 20
const POLL_INTERVAL_MS = 2_000
const PUBLISH_BATCH = 500
const PHASE_TIMEOUT_MS = 180_000
const STOP_TIMEOUT_MS = 30_000
/** Deliveries whose signatures are checked after the run (checking all would load the receiver). */
const VERIFIED_SAMPLE = 200

interface SideResult {
  readonly side: string
  readonly items: number
  readonly seconds: number
  readonly perSecond: number
  /** CPU time of this process per item: what the side costs, whatever else the machine is doing. */
  readonly cpuPerItem: number
}

const noopSide = (url: string): Promise<SideResult> =>
  (async () => {
    const pool = new pg.Pool({ connectionString: url, max: POOL_MAX })
    // As core/Database.ts does: a dropped connection must not crash the run.
    pool.on("error", () => {})
    pool.on("connect", (client) => client.on("error", () => {}))
    try {
      await runMigrations({ pgPool: pool, logger: quietLogger })
      await pool.query(
        `select graphile_worker.add_jobs(array(
           select row('bench.noop', json_build_object('data', json_build_object('n', i)), null, null, null, null, null, null)::graphile_worker.job_spec
           from generate_series(1, $1::int) as i))`,
        [NOOP_JOBS]
      )
      let count = 0
      let finish = () => {}
      const done = new Promise<void>((resolve) => (finish = resolve))
      const start = performance.now()
      const cpu = process.cpuUsage()
      const runner = await runGraphileWorker({
        pgPool: pool,
        taskList: { "bench.noop": async () => void (++count === NOOP_JOBS && finish()) },
        concurrency: CONCURRENCY,
        pollInterval: POLL_INTERVAL_MS,
        noHandleSignals: true,
        logger: quietLogger,
        preset: { worker: { localQueue: { size: LOCAL_QUEUE_SIZE }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } }
      })
      try {
        await within(PHASE_TIMEOUT_MS, `graphile-worker: ${NOOP_JOBS} jobs`, done)
        const seconds = (performance.now() - start) / 1000
        return { side: "graphile-worker no-op jobs", items: NOOP_JOBS, seconds, perSecond: NOOP_JOBS / seconds, cpuPerItem: cpuMicros(process.cpuUsage(cpu)) / NOOP_JOBS }
      } finally {
        await within(STOP_TIMEOUT_MS, "graphile-worker: stop", runner.stop()).catch(() => runner.kill())
      }
    } finally {
      await pool.end()
    }
  })()

/**
 * The receiver runs in a process of its own, as a customer's server would, so its CPU is not
 * counted as Trellis's. It answers 204, counts distinct webhook-ids and keeps a sample of
 * deliveries, which it hands over when asked.
 */
const RECEIVER_SOURCE = `
  const http = require("node:http")
  const seen = new Set()
  const sample = []
  const server = http.createServer((request, response) => {
    const chunks = []
    request.on("data", (chunk) => chunks.push(chunk))
    request.on("end", () => {
      seen.add(String(request.headers["webhook-id"]))
      if (sample.length < ${VERIFIED_SAMPLE}) sample.push({ body: Buffer.concat(chunks).toString("utf8"), headers: request.headers })
      response.writeHead(204).end()
    })
  })
  server.listen(0, "127.0.0.1", () => process.send({ port: server.address().port }))
  process.on("message", () => process.send({ seen: seen.size, sample }))
  process.on("disconnect", () => process.exit(0))
`

interface ReceiverReport {
  readonly seen: number
  readonly sample: ReadonlyArray<{ body: string; headers: Record<string, string> }>
}

const startReceiver = () =>
  new Promise<{ url: string; report: () => Promise<ReceiverReport>; stop: () => void }>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", RECEIVER_SOURCE], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
    child.once("error", reject)
    child.once("message", (message: { port: number }) =>
      resolve({
        url: `http://127.0.0.1:${message.port}/hook`,
        report: () =>
          new Promise((answer) => {
            child.once("message", (report: ReceiverReport) => answer(report))
            child.send("report")
          }),
        stop: () => child.kill()
      })
    )
  })

const BenchHappened = defineEvent("bench.happened", Schema.Struct({ n: Schema.Int }))

const benchPlugin = definePlugin({
  name: "bench",
  description: "The event the webhooks benchmark publishes",
  events: { publishes: [BenchHappened] },
  migrations: { load: Effect.succeed([]) }
})

/** Production's defaults with the benchmark's worker settings. */
const trellisConfig = (dataDir: string): Promise<AppConfig> =>
  benchConfig(() => ({
    dataDir,
    databasePoolMax: POOL_MAX,
    workerConcurrency: CONCURRENCY,
    localQueueSize: LOCAL_QUEUE_SIZE,
    pollInterval: POLL_INTERVAL_MS,
    shutdownTimeout: Duration.millis(STOP_TIMEOUT_MS),
    logLevel: "Warning"
  }))

/**
 * The events are published before the worker starts (as the no-op jobs are inserted before
 * graphile-worker starts), so the clock measures fan-out and delivery only. It stops when the
 * receiver has every message and the attempt log has every success.
 */
const webhooksSide = (url: string): Promise<SideResult> =>
  (async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "trellis-bench-"))
    const receiver = await startReceiver()
    try {
      const config = await trellisConfig(dataDir)
      const webhooks = makeWebhooks(Schema.decodeUnknownSync(WebhooksOptions)({ requireHttps: false, allow: ["127.0.0.1/32"] }))
      const setup: AppSetup = { config, plugins: [webhooks, benchPlugin], databaseUrl: Redacted.make(url), adminApiKey: config.adminApiKey }
      const worker = layerWorker({
        registry: buildRegistry(setup.plugins),
        concurrency: config.workerConcurrency,
        localQueueSize: config.localQueueSize,
        pollInterval: config.pollInterval,
        shutdownTimeout: config.shutdownTimeout
      })
      const program = Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const orgId = randomUUID()
        const endpoint = yield* inTenant(
          orgId,
          Effect.flatMap(WebhooksService, (s) => s.create(Schema.decodeUnknownSync(CreateEndpoint)({ url: receiver.url })))
        )
        for (let from = 0; from < EVENTS; from += PUBLISH_BATCH) {
          yield* inTenant(
            orgId,
            Effect.forEach(Array.from({ length: Math.min(PUBLISH_BATCH, EVENTS - from) }, (_, i) => from + i), (n) => publish(BenchHappened, { n }), {
              discard: true
            })
          )
        }
        const start = performance.now()
        const cpu = process.cpuUsage()
        return yield* Effect.scoped(
          Effect.gen(function* () {
            yield* Layer.build(worker)
            const logged = sql<{ n: number }>`select count(*)::int as n from webhooks.attempts where succeeded`
            yield* Effect.gen(function* () {
              while ((yield* logged)[0]!.n < EVENTS) yield* Effect.sleep("20 millis")
            }).pipe(Effect.timeoutFail({ duration: PHASE_TIMEOUT_MS, onTimeout: () => new Error(`webhooks: ${EVENTS} deliveries not done in time`) }))
            const seconds = (performance.now() - start) / 1000
            const cpuPerItem = cpuMicros(process.cpuUsage(cpu)) / EVENTS
            const report = yield* Effect.promise(receiver.report)
            if (report.seen !== EVENTS) return yield* Effect.die(new Error(`the receiver saw ${report.seen} messages, not ${EVENTS}`))
            const verifier = new Webhook(endpoint.secret)
            for (const delivery of report.sample) verifier.verify(delivery.body, delivery.headers)
            return { side: "trellis signed deliveries", items: EVENTS, seconds, perSecond: EVENTS / seconds, cpuPerItem }
          })
        )
      })
      return await Effect.runPromise(
        program.pipe(
          Effect.provide(layerApp(setup)),
          Effect.provide(layerTracing({ endpoint: Option.getOrUndefined(config.otlpEndpoint), serviceName: config.serviceName, sampleRatio: config.traceSampleRatio })),
          Effect.provide(layerLogger(config))
        )
      )
    } finally {
      receiver.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })()

const printTable = (results: ReadonlyArray<SideResult>) =>
  printColumns(
    ["side", "items", "run s", "per second", "cpu µs/item"],
    results.map((r) => [r.side, String(r.items), r.seconds.toFixed(2), r.perSecond.toFixed(0), r.cpuPerItem.toFixed(0)])
  )

export const run = () =>
  dropDatabasesOnSignal(async () => {
    const server = await admin((c) => c.query<{ server_version: string }>("show server_version"))
    console.log(
      `webhooks: ${EVENTS} events to one endpoint on 127.0.0.1 vs ${NOOP_JOBS} no-op jobs; concurrency ${CONCURRENCY}, ` +
        `local queue ${LOCAL_QUEUE_SIZE}, batch delays 0, pool ${POOL_MAX}; PostgreSQL ${server.rows[0]?.server_version} at ` +
        `${new URL(adminUrl).host}; node ${process.version}, ${availableParallelism()} cores`
    )
    // The baseline runs before and after: on a shared machine the load drifts during the long
    // delivery phase, and the mean of both is fairer than either.
    const before = await withBenchDatabase(noopSide)
    const deliveries = await withBenchDatabase(webhooksSide)
    const after = await withBenchDatabase(noopSide)
    printTable([before, deliveries, after])
    const noopPerSecond = (before.perSecond + after.perSecond) / 2
    console.log(`webhooks: deliveries/noop-jobs = ${(deliveries.perSecond / noopPerSecond).toFixed(3)}`)
  })
