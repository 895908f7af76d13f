import type { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Option, Redacted, Runtime, Schema } from "effect"
import { run as runGraphileWorker, runMigrations } from "graphile-worker"
import { mkdtemp, rm } from "node:fs/promises"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import pg from "pg"
import { PgPool } from "../../core/Database.ts"
import { defineTask, enqueue } from "../../core/Jobs.ts"
import { definePlugin } from "../../core/Plugin.ts"
import { buildRegistry } from "../../core/Registry.ts"
import { layerTracing } from "../../core/Tracing.ts"
import { layerApp, layerLogger, type AppSetup } from "../../runtime/App.ts"
import type { AppConfig } from "../../runtime/Config.ts"
import { layerWorker } from "../../runtime/Worker.ts"
import { abandon, adminUrl, benchConfig, cpuMicros, dropDatabasesOnSignal, median, printColumns, quietLogger, withAdmin as admin, withBenchDatabase, within } from "./support.ts"

/**
 * 20,000 no-op jobs through raw graphile-worker and through Trellis tasks, with the same
 * worker settings, pool size and PostgreSQL server, each side on a fresh database; then
 * enqueue-to-start latency of 2,000 jobs added one at a time to the idle worker.
 */

const JOBS = 20_000
const LATENCY_JOBS = 2_000
const ROUNDS = 5
const CONCURRENCY = 10
const LOCAL_QUEUE_SIZE = 500
const POOL_MAX = 20
// Production's default; the phases are driven by LISTEN/NOTIFY and the local queue, not by polls.
const POLL_INTERVAL_MS = 2_000
const SETUP_TIMEOUT_MS = 60_000
const PHASE_TIMEOUT_MS = 120_000
const STOP_TIMEOUT_MS = 30_000
const DRAIN_TIMEOUT_MS = 10_000
// Past every phase's own bound: whatever hangs where no phase timeout reaches (migrations
// inside the app layer, a stuck shutdown) still ends the run.
const RUN_TIMEOUT_MS = 12 * 60_000
const TASK_ID = "bench.noop"

/**
 * Counts handler runs of the current phase and, in the latency phase, records when each
 * job's handler started (indexed by the sequence number its payload carries).
 */
interface Phase {
  readonly target: number
  readonly starts: Float64Array | undefined
  readonly resolve: () => void
  count: number
}

let phase: Phase | undefined

const expectRuns = (target: number, starts?: Float64Array) =>
  new Promise<void>((resolve) => {
    phase = { target, starts, resolve, count: 0 }
  })

const started = (seq: number) => {
  const current = phase
  if (current === undefined) return
  if (current.starts) current.starts[seq] = performance.now()
  current.count += 1
  if (current.count === current.target) current.resolve()
}

/**
 * Both sides store the same payload, a Trellis envelope, so the only difference between
 * them is what runs around the handler.
 */
const envelopeOf = (seq: number) => JSON.stringify({ data: { n: seq } })

/** Adds `count` jobs in one statement, before any worker runs; returns the milliseconds it took. */
const bulkInsert = async (pool: pg.Pool, count: number) => {
  const start = performance.now()
  const result = await pool.query<{ added: number }>(
    `select count(*)::int as added from graphile_worker.add_jobs(array(
       select row($1::text, json_build_object('data', json_build_object('n', i)), null, null, null, null, null, null)::graphile_worker.job_spec
       from generate_series(1, $2::int) as i))`,
    [TASK_ID, count]
  )
  if (result.rows[0]?.added !== count) throw new Error(`bulk insert added ${result.rows[0]?.added} jobs, not ${count}`)
  return performance.now() - start
}

/** Waits until graphile-worker has deleted every completed job (completions are batched). */
const drained = async (pool: pg.Pool) => {
  const deadline = performance.now() + DRAIN_TIMEOUT_MS
  for (;;) {
    const { rows } = await pool.query<{ left: number }>("select count(*)::int as left from graphile_worker._private_jobs")
    if (rows[0]?.left === 0) return
    if (performance.now() > deadline) throw new Error(`${rows[0]?.left} jobs still in the queue after the run`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

interface Latency {
  readonly p50: number
  readonly p99: number
}

/** Nearest-rank percentile of sorted values. */
const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!

/** Adds the jobs one at a time to the idle worker: from add_job returning to the handler starting. */
const measureLatency = async (label: string, add: (seq: number) => Promise<unknown>): Promise<Latency> => {
  const starts = new Float64Array(LATENCY_JOBS)
  const added = new Float64Array(LATENCY_JOBS)
  const done = expectRuns(LATENCY_JOBS, starts)
  await within(
    PHASE_TIMEOUT_MS,
    `${label}: latency`,
    (async () => {
      for (let seq = 0; seq < LATENCY_JOBS; seq++) {
        await add(seq)
        added[seq] = performance.now()
      }
      await done
    })()
  )
  const latencies = Array.from(starts, (start, seq) => start - added[seq]!).sort((a, b) => a - b)
  return { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) }
}

interface SideResult {
  readonly side: string
  readonly insertMs: number
  readonly runSeconds: number
  readonly jobsPerSecond: number
  /** CPU time of this process per job while the jobs ran: what the side costs, whatever else the machine is doing. */
  readonly cpuPerJob: number
  readonly latency: Latency
}

const graphileWorkerSide = async (url: string): Promise<SideResult> => {
  const side = "graphile-worker"
  const pool = new pg.Pool({ connectionString: url, max: POOL_MAX })
  // As core/Database.ts does: a dropped connection must not crash the run.
  pool.on("error", () => {})
  pool.on("connect", (client) => client.on("error", () => {}))
  try {
    const insertMs = await within(
      SETUP_TIMEOUT_MS,
      `${side}: setup`,
      runMigrations({ pgPool: pool, logger: quietLogger }).then(() => bulkInsert(pool, JOBS))
    )
    const done = expectRuns(JOBS)
    const start = performance.now()
    const cpu = process.cpuUsage()
    const runner = await runGraphileWorker({
      pgPool: pool,
      taskList: {
        [TASK_ID]: async (payload) => started((payload as { data: { n: number } }).data.n)
      },
      concurrency: CONCURRENCY,
      pollInterval: POLL_INTERVAL_MS,
      noHandleSignals: true,
      logger: quietLogger,
      preset: {
        worker: { localQueue: { size: LOCAL_QUEUE_SIZE }, completeJobBatchDelay: 0, failJobBatchDelay: 0 }
      }
    })
    try {
      await within(PHASE_TIMEOUT_MS, `${side}: ${JOBS} jobs`, done)
      const runSeconds = (performance.now() - start) / 1000
      const cpuPerJob = cpuMicros(process.cpuUsage(cpu)) / JOBS
      await drained(pool)
      const latency = await measureLatency(side, (seq) =>
        pool.query("select graphile_worker.add_job($1, $2::json)", [TASK_ID, envelopeOf(seq)])
      )
      return { side, insertMs, runSeconds, jobsPerSecond: JOBS / runSeconds, cpuPerJob, latency }
    } finally {
      await within(STOP_TIMEOUT_MS, `${side}: stop`, runner.stop()).catch(() => runner.kill())
    }
  } finally {
    await pool.end()
  }
}

const noopTask = defineTask({
  id: TASK_ID,
  payload: Schema.Struct({ n: Schema.Int }),
  handler: ({ n }) => Effect.sync(() => started(n))
})

const benchPlugin = definePlugin({
  name: "bench",
  description: "The no-op task of the jobs benchmark",
  tasks: [noopTask],
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
 * The app and worker composed as `layerMode("worker", ...)` composes them (tracing from
 * `layerTracing` without an endpoint, the production logger), except that the worker
 * layer is built after the bulk insert, so the timing starts where it starts for
 * graphile-worker rather than including migrations.
 */
const trellisSide = async (url: string): Promise<SideResult> => {
  const side = "trellis"
  const dataDir = await mkdtemp(join(tmpdir(), "trellis-bench-"))
  try {
    const config = await trellisConfig(dataDir)
    const setup: AppSetup = {
      config,
      plugins: [benchPlugin],
      databaseUrl: Redacted.make(url),
      adminApiKey: config.adminApiKey
    }
    const worker = layerWorker({
      registry: buildRegistry(setup.plugins),
      concurrency: config.workerConcurrency,
      localQueueSize: config.localQueueSize,
      pollInterval: config.pollInterval,
      shutdownTimeout: config.shutdownTimeout
    })
    const program = Effect.gen(function* () {
      const pool = yield* PgPool
      const insertMs = yield* Effect.promise(() => within(SETUP_TIMEOUT_MS, `${side}: setup`, bulkInsert(pool, JOBS)))
      const done = expectRuns(JOBS)
      const start = performance.now()
      const cpu = process.cpuUsage()
      return yield* Effect.scoped(
        Effect.gen(function* () {
          yield* Layer.build(worker)
          yield* Effect.promise(() => within(PHASE_TIMEOUT_MS, `${side}: ${JOBS} jobs`, done))
          const runSeconds = (performance.now() - start) / 1000
          const cpuPerJob = cpuMicros(process.cpuUsage(cpu)) / JOBS
          yield* Effect.promise(() => drained(pool))
          const runPromise = Runtime.runPromise(yield* Effect.runtime<SqlClient.SqlClient>())
          const latency = yield* Effect.promise(() =>
            measureLatency(side, (seq) => runPromise(enqueue(noopTask, { n: seq })))
          )
          return { side, insertMs, runSeconds, jobsPerSecond: JOBS / runSeconds, cpuPerJob, latency }
        })
      )
    })
    return await Effect.runPromise(
      program.pipe(
        Effect.provide(layerApp(setup)),
        Effect.provide(
          layerTracing({
            endpoint: Option.getOrUndefined(config.otlpEndpoint),
            serviceName: config.serviceName,
            sampleRatio: config.traceSampleRatio
          })
        ),
        Effect.provide(layerLogger(config))
      )
    )
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
}

const printTable = (results: ReadonlyArray<SideResult>) =>
  printColumns(
    ["side", "insert ms", "run s", "jobs/s", "cpu µs/job", "latency p50 ms", "latency p99 ms"],
    results.map((r) => [
      r.side,
      r.insertMs.toFixed(0),
      r.runSeconds.toFixed(2),
      r.jobsPerSecond.toFixed(0),
      r.cpuPerJob.toFixed(0),
      r.latency.p50.toFixed(2),
      r.latency.p99.toFixed(2)
    ])
  )

export const run = () =>
  dropDatabasesOnSignal(async () => {
    const watchdog = setTimeout(() => abandon(`no result within ${RUN_TIMEOUT_MS / 60_000} minutes`, 1), RUN_TIMEOUT_MS)
    try {
      const server = await admin((c) => c.query<{ server_version: string }>("show server_version"))
      const where = new URL(adminUrl)
      console.log(
        `graphile-worker vs trellis, ${ROUNDS} alternating rounds: ${JOBS} no-op jobs, concurrency ${CONCURRENCY}, local queue ${LOCAL_QUEUE_SIZE}, pool ${POOL_MAX}; ` +
          `latency over ${LATENCY_JOBS} jobs added one at a time; PostgreSQL ${server.rows[0]?.server_version} ` +
          `at ${where.host}; node ${process.version}, ${availableParallelism()} cores`
      )
      // Alternating rounds: one pair of 0.6 s phases swings by 25% with whatever else the two
      // cores are doing; the median round of each side is what the ratio compares.
      const rounds: Array<{ graphileWorker: SideResult; trellis: SideResult }> = []
      for (let round = 0; round < ROUNDS; round++) {
        rounds.push({ graphileWorker: await withBenchDatabase(graphileWorkerSide), trellis: await withBenchDatabase(trellisSide) })
      }
      printTable(rounds.flatMap((r, i) => [{ ...r.graphileWorker, side: `graphile-worker #${i + 1}` }, { ...r.trellis, side: `trellis #${i + 1}` }]))
      const graphileWorker = median(rounds.map((r) => r.graphileWorker), (r) => r.jobsPerSecond)
      const trellis = median(rounds.map((r) => r.trellis), (r) => r.jobsPerSecond)
      console.log(`median of ${ROUNDS} rounds: graphile-worker ${graphileWorker.jobsPerSecond.toFixed(0)} jobs/s, trellis ${trellis.jobsPerSecond.toFixed(0)} jobs/s`)
      console.log(`jobs: trellis/graphile-worker = ${(trellis.jobsPerSecond / graphileWorker.jobsPerSecond).toFixed(2)}`)
    } finally {
      clearTimeout(watchdog)
    }
  })
