import { ConfigProvider, Effect } from "effect"
import { Logger } from "graphile-worker"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import { promisify } from "node:util"
import pg from "pg"

import { loadConfig, type AppConfig } from "../../runtime/Config.ts"

const run$ = promisify(execFile)

/** The server benchmarks run against: BENCH_DATABASE_URL, DATABASE_URL, else the local one. */
export const adminUrl =
  process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

/** Runs `f` on a short-lived connection to the admin database (create and drop databases). */
export const withAdmin = async <A>(f: (client: pg.Client) => Promise<A>) => {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

/** Databases this run made and has not dropped yet, so an interrupted run still drops them. */
const live = new Set<string>()

const dropByName = async (name: string) => {
  await withAdmin((c) => c.query(`drop database if exists ${name} with (force)`))
  live.delete(name)
}

/** A fresh database for one benchmark; `drop` removes it (call it in `finally`). */
export const benchDatabase = async () => {
  const name = `trellis_bench_${randomBytes(6).toString("hex")}`
  await withAdmin((c) => c.query(`create database ${name}`))
  live.add(name)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return { name, url: url.toString(), drop: () => dropByName(name) }
}

/** `f` on a fresh database, dropped afterwards. */
export const withBenchDatabase = async <A>(f: (url: string) => Promise<A>): Promise<A> => {
  const db = await benchDatabase()
  try {
    return await f(db.url)
  } finally {
    await db.drop()
  }
}

/** Drops this run's databases and exits: the way out of a run interrupted or hung. */
export const abandon = (reason: string, code: number) => {
  console.error(`${reason}: dropping the benchmark databases`)
  void Promise.allSettled([...live].map(dropByName)).then(() => process.exit(code))
}

/** Runs `body`; SIGINT or SIGTERM meanwhile drops this run's databases and exits. */
export const dropDatabasesOnSignal = async <A>(body: () => Promise<A>): Promise<A> => {
  const interrupted = (signal: NodeJS.Signals) => abandon(signal, 130)
  process.once("SIGINT", interrupted)
  process.once("SIGTERM", interrupted)
  try {
    return await body()
  } finally {
    process.off("SIGINT", interrupted)
    process.off("SIGTERM", interrupted)
  }
}

/** Fails with a message naming `label` when `promise` takes longer than `ms`. */
export const within = <A>(ms: number, label: string, promise: Promise<A>): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: no result within ${ms / 1000} s`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// Warnings and errors still show: a benchmark hiding a failing worker would measure nothing.
export const quietLogger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`)
})

export const cpuMicros = (usage: NodeJS.CpuUsage) => usage.user + usage.system

/** The middle one of `rows` by `value` (rounds of alternating sides compare their medians). */
export const median = <A>(rows: ReadonlyArray<A>, value: (row: A) => number): A =>
  [...rows].sort((a, b) => value(a) - value(b))[Math.floor(rows.length / 2)]!

/**
 * Production's defaults (effect.config.ts and the environment left out, so a run does not
 * depend on them) with a benchmark's own settings over them.
 */
export const benchConfig = (settings: (defaults: AppConfig) => Partial<AppConfig>): Promise<AppConfig> =>
  Effect.runPromise(
    loadConfig({ plugins: {} }).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map())),
      Effect.map((defaults): AppConfig => ({ ...defaults, ...settings(defaults) }))
    )
  )

export interface HttpResult {
  readonly side: string
  readonly requestsPerSecond: number
  readonly p50: number
  readonly p99: number
  /** CPU time of this process (the server; the load generator is another process) per request. */
  readonly cpuPerRequest: number
  readonly failures: number
}

/**
 * autocannon in its own process (so the load generator does not share the server's event
 * loop), after a warm-up run of the same shape; bounded by its duration.
 */
export const autocannon = async (
  side: string,
  url: string,
  options: { readonly headers?: Record<string, string>; readonly connections: number; readonly seconds: number; readonly warmupSeconds: number }
): Promise<HttpResult> => {
  const bin = join(process.cwd(), "node_modules", ".bin", "autocannon")
  const args = (seconds: number) => [
    "-c", String(options.connections), "-d", String(seconds), "-j",
    ...Object.entries(options.headers ?? {}).flatMap(([k, v]) => ["-H", `${k}=${v}`]),
    url
  ]
  await run$(bin, args(options.warmupSeconds), { maxBuffer: 16 * 1024 * 1024 })
  const cpu = process.cpuUsage()
  const { stdout } = await run$(bin, args(options.seconds), { maxBuffer: 16 * 1024 * 1024 })
  const used = process.cpuUsage(cpu)
  // The fields of autocannon's JSON report read here.
  const report = JSON.parse(stdout) as {
    requests: { average: number; total: number }
    latency: { p50: number; p99: number }
    non2xx: number
    errors: number
    timeouts: number
  }
  return {
    side,
    requestsPerSecond: report.requests.average,
    p50: report.latency.p50,
    p99: report.latency.p99,
    cpuPerRequest: cpuMicros(used) / 1000 / Math.max(1, report.requests.total),
    failures: report.non2xx + report.errors + report.timeouts
  }
}

/** Prints `rows` under `header` in aligned columns, the first left-aligned, the others right-aligned. */
export const printColumns = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  console.log(line(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const row of rows) console.log(line(row))
}

export const printTable = (results: ReadonlyArray<HttpResult>) =>
  printColumns(
    ["side", "req/s", "p50 ms", "p99 ms", "cpu ms/req", "failed"],
    results.map((r) => [
      r.side,
      r.requestsPerSecond.toFixed(0),
      r.p50.toFixed(1),
      r.p99.toFixed(1),
      r.cpuPerRequest.toFixed(2),
      String(r.failures)
    ])
  )
