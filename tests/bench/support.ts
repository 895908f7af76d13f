import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import { promisify } from "node:util"
import pg from "pg"

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

/** A fresh database for one benchmark; `drop` removes it (call it in `finally`). */
export const benchDatabase = async () => {
  const name = `trellis_bench_${randomBytes(6).toString("hex")}`
  await withAdmin((c) => c.query(`create database ${name}`))
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    drop: () => withAdmin((c) => c.query(`drop database if exists ${name} with (force)`)).then(() => undefined)
  }
}

export interface HttpResult {
  readonly side: string
  readonly requestsPerSecond: number
  readonly p50: number
  readonly p99: number
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
  const { stdout } = await run$(bin, args(options.seconds), { maxBuffer: 16 * 1024 * 1024 })
  // The fields of autocannon's JSON report read here.
  const report = JSON.parse(stdout) as {
    requests: { average: number }
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
    failures: report.non2xx + report.errors + report.timeouts
  }
}

export const printTable = (rows: ReadonlyArray<HttpResult>) => {
  console.log("side                 req/s     p50 ms  p99 ms  failures")
  for (const r of rows) {
    console.log(
      `${r.side.padEnd(20)} ${r.requestsPerSecond.toFixed(0).padStart(7)}  ${String(r.p50).padStart(6)}  ${String(r.p99).padStart(6)}  ${r.failures}`
    )
  }
}
