import { HttpServer } from "@effect/platform"
import { Effect, Layer, Option, Redacted, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { Worker } from "node:worker_threads"
import { CredentialVerifier, type Actor } from "../../core/Auth.ts"
import { FeatureGate } from "../../core/FeatureGate.ts"
import { definePlugin } from "../../core/Plugin.ts"
import { buildRegistry } from "../../core/Registry.ts"
import { CurrentTenant } from "../../core/Tenancy.ts"
import { layerTracing } from "../../core/Tracing.ts"
import { FlagsAdmin } from "../../plugins/flags/Admin.ts"
import { flags } from "../../plugins/flags/index.ts"
import { CreateFlag } from "../../plugins/flags/Model.ts"
import { ops } from "../../plugins/ops/index.ts"
import { layerApp, layerLogger, type AppSetup } from "../../runtime/App.ts"
import type { AppConfig } from "../../runtime/Config.ts"
import { layerHttp } from "../../runtime/Http.ts"
import { benchConfig, benchDatabase, dropDatabasesOnSignal, withAdmin as admin } from "./support.ts"

/**
 * Flag evaluation throughput, on a fresh database with production's defaults (memory cache,
 * tracer off, warnings-only log):
 * - in process: evaluations per second through FeatureGate of a flag with a 50% rollout and
 *   two constraints, with the definition cached;
 * - over HTTP: OFREP single evaluations of that flag per second against the ops health route
 *   (authenticated the same way, same server), alternating, from a worker thread holding the
 *   same keep-alive connections throughout, so the load generator does not share the
 *   server's thread.
 * Both routes authenticate through a constant CredentialVerifier, so what differs is the
 * evaluation, not the credential lookup.
 */

const CONNECTIONS = 16
const WARMUP_MS = 1_500
const PHASE_MS = 1_500
const ROUNDS = 8
const IN_PROCESS_MS = 3_000
const USERS = 1_000
const RUN_TIMEOUT_MS = 120_000
const FLAG_KEY = "bench.checkout-rollout"
const API_KEY = `bench-${randomUUID()}`
const ORG_ID = randomUUID()

const benchActor: Actor = {
  kind: "api_key",
  id: "bench",
  orgId: Option.some(ORG_ID),
  roles: [],
  permissions: ["ops:read", "flags:evaluate"]
}

const benchAuth = definePlugin({
  name: "benchauth",
  description: "One API key of one organisation, checked without a lookup",
  layer: Layer.succeed(CredentialVerifier, {
    apiKey: (key) => Effect.succeed(key === API_KEY ? Option.some(benchActor) : Option.none()),
    bearer: () => Effect.succeed(Option.none())
  }),
  migrations: { load: Effect.succeed([]) }
})

const rolloutFlag = Schema.decodeUnknownSync(CreateFlag)({
  key: FLAG_KEY,
  type: "release",
  environments: {
    production: {
      enabled: true,
      strategies: [
        {
          name: "flexibleRollout",
          parameters: { rollout: 50, stickiness: "userId" },
          constraints: [
            { contextName: "country", operator: "IN", values: ["NL", "BE", "DE"] },
            { contextName: "appVersion", operator: "SEMVER_GT", value: "2.0.0" }
          ]
        }
      ]
    }
  }
})

const contextOf = (i: number) => ({ userId: `user-${i}`, country: i % 4 === 0 ? "FR" : "NL", appVersion: i % 5 === 0 ? "1.9.0" : "2.3.1" })

/** Production's defaults (effect.config.ts and environment left out), rate limits out of the way. */
const flagsBenchConfig = (dataDir: string): Promise<AppConfig> =>
  benchConfig((defaults) => ({
    dataDir,
    port: 0,
    logLevel: "Warning",
    rateLimits: { ...defaults.rateLimits, authenticated: { limit: 1_000_000_000, windowSeconds: 60 } }
  }))

interface Target {
  readonly name: string
  readonly method: string
  readonly path: string
  readonly bodies: ReadonlyArray<string>
}

interface PhaseResult {
  readonly name: string
  readonly ok: number
  readonly failed: number
  readonly seconds: number
}

// Plain JavaScript: an eval'd worker needs no TypeScript loader.
const clientSource = `
const { parentPort, workerData } = require("node:worker_threads")
const http = require("node:http")
const { port, apiKey, connections, warmupMs, phaseMs, rounds, targets } = workerData
const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
const send = (target, n) => new Promise((resolve) => {
  const body = target.bodies.length === 0 ? undefined : target.bodies[n % target.bodies.length]
  const headers = { "x-api-key": apiKey }
  if (body !== undefined) { headers["content-type"] = "application/json"; headers["content-length"] = Buffer.byteLength(body) }
  const req = http.request({ host: "127.0.0.1", port, method: target.method, path: target.path, agent, headers }, (res) => {
    res.resume()
    res.on("end", () => resolve(res.statusCode))
  })
  req.on("error", () => resolve(0))
  req.end(body)
})
const phase = async (target, ms) => {
  const end = Date.now() + ms
  let ok = 0, failed = 0
  const start = performance.now()
  await Promise.all(Array.from({ length: connections }, async (_, c) => {
    for (let n = c; Date.now() < end; n += connections) ((await send(target, n)) === 200 ? ok++ : failed++)
  }))
  return { name: target.name, ok, failed, seconds: (performance.now() - start) / 1000 }
}
;(async () => {
  for (const target of targets) await phase(target, warmupMs)
  const results = []
  for (let r = 0; r < rounds; r++) for (const target of targets) results.push(await phase(target, phaseMs))
  agent.destroy()
  parentPort.postMessage(results)
})().catch((error) => parentPort.postMessage({ error: String(error) }))
`

const runClient = (port: number, targets: ReadonlyArray<Target>) =>
  new Promise<ReadonlyArray<PhaseResult>>((resolve, reject) => {
    const worker = new Worker(clientSource, {
      eval: true,
      workerData: { port, apiKey: API_KEY, connections: CONNECTIONS, warmupMs: WARMUP_MS, phaseMs: PHASE_MS, rounds: ROUNDS, targets }
    })
    const timer = setTimeout(() => {
      void worker.terminate()
      reject(new Error(`the HTTP client did not finish within ${RUN_TIMEOUT_MS / 1000} s`))
    }, RUN_TIMEOUT_MS)
    worker.once("message", (message: ReadonlyArray<PhaseResult> | { error: string }) => {
      clearTimeout(timer)
      void worker.terminate()
      if ("error" in message) reject(new Error(message.error))
      else resolve(message)
    })
    worker.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })

/** Evaluations through FeatureGate for IN_PROCESS_MS, after a warm-up that caches the definition. */
const inProcess = Effect.gen(function* () {
  const gate = yield* FeatureGate
  const contexts = Array.from({ length: USERS }, (_, i) => contextOf(i))
  let on = 0
  for (let i = 0; i < 10_000; i++) if (yield* gate.isEnabled(FLAG_KEY, contexts[i % USERS])) on++
  let evaluations = 0
  const start = performance.now()
  while (performance.now() - start < IN_PROCESS_MS) {
    for (let i = 0; i < 1_000; i++) {
      if (yield* gate.isEnabled(FLAG_KEY, contexts[evaluations % USERS])) on++
      evaluations++
    }
  }
  const seconds = (performance.now() - start) / 1000
  if (on === 0) throw new Error("the benchmark flag was never on: the evaluation is not what it should be")
  return { evaluations, perSecond: evaluations / seconds }
}).pipe(Effect.provideService(CurrentTenant, Option.some(ORG_ID)))

const rates = (results: ReadonlyArray<PhaseResult>, name: string) => {
  const mine = results.filter((r) => r.name === name)
  const failed = mine.reduce((n, r) => n + r.failed, 0)
  if (failed > 0) throw new Error(`${name}: ${failed} responses were not 200`)
  return {
    requests: mine.reduce((n, r) => n + r.ok, 0),
    perSecond: mine.reduce((n, r) => n + r.ok, 0) / mine.reduce((n, r) => n + r.seconds, 0),
    rounds: mine.map((r) => r.ok / r.seconds)
  }
}

/** The median of the rounds' ratios: each pair of adjacent phases shares the machine's load of the moment. */
const medianRatio = (ofrep: ReadonlyArray<number>, health: ReadonlyArray<number>) => {
  const ratios = ofrep.map((rate, i) => rate / health[i]!).sort((a, b) => a - b)
  const middle = Math.floor(ratios.length / 2)
  return ratios.length % 2 === 1 ? ratios[middle]! : (ratios[middle - 1]! + ratios[middle]!) / 2
}

const measure = (url: string, dataDir: string) =>
  Effect.gen(function* () {
    const config = yield* Effect.promise(() => flagsBenchConfig(dataDir))
    const plugins = [ops.make(Schema.decodeUnknownSync(ops.options)({})), flags.make(Schema.decodeUnknownSync(flags.options)({})), benchAuth]
    const setup: AppSetup = { config, plugins, databaseUrl: Redacted.make(url), adminApiKey: Option.none() }
    const http = layerHttp({
      port: 0,
      host: "127.0.0.1",
      maxBodySize: config.maxBodySize,
      corsOrigins: [],
      plugins: buildRegistry(plugins).plugins
    })
    const context = yield* Layer.build(
      http.pipe(
        Layer.provideMerge(layerApp(setup)),
        Layer.provide(layerTracing({ endpoint: undefined, serviceName: config.serviceName, sampleRatio: 1 })),
        Layer.provide(layerLogger(config))
      )
    )
    yield* Effect.flatMap(FlagsAdmin, (flagsAdmin) => flagsAdmin.create(rolloutFlag)).pipe(
      Effect.provideService(CurrentTenant, Option.some(ORG_ID)),
      Effect.provide(context)
    )
    const gate = yield* inProcess.pipe(Effect.provide(context))
    const address = (yield* Effect.provide(HttpServer.HttpServer, context)).address
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP server")
    const bodies = Array.from({ length: USERS }, (_, i) => JSON.stringify({ context: { ...contextOf(i), targetingKey: `user-${i}` } }))
    const results = yield* Effect.promise(() =>
      runClient(address.port, [
        { name: "health", method: "GET", path: "/api/v1/ops/health", bodies: [] },
        { name: "ofrep", method: "POST", path: `/ofrep/v1/evaluate/flags/${FLAG_KEY}`, bodies }
      ])
    )
    return { gate, health: rates(results, "health"), ofrep: rates(results, "ofrep") }
  }).pipe(Effect.scoped)

export const run = () =>
  dropDatabasesOnSignal(async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "trellis-bench-flags-"))
    let database: Awaited<ReturnType<typeof benchDatabase>> | undefined
    try {
      const server = await admin((c) => c.query<{ server_version: string }>("show server_version"))
      console.log(
        `flags: rollout 50% + 2 constraints; in-process for ${IN_PROCESS_MS / 1000} s; HTTP ${CONNECTIONS} keep-alive connections, ` +
          `${ROUNDS} alternating rounds of ${PHASE_MS / 1000} s per route (ratio: median over rounds); PostgreSQL ${server.rows[0]?.server_version}; ` +
          `node ${process.version}, ${availableParallelism()} cores`
      )
      database = await benchDatabase()
      const result = await Effect.runPromise(measure(database.url, dataDir))
      console.log(`in-process FeatureGate.isEnabled: ${result.gate.perSecond.toFixed(0)} evaluations/s (${result.gate.evaluations} evaluations)`)
      console.log(`GET /api/v1/ops/health:          ${result.health.perSecond.toFixed(0)} req/s (${result.health.requests} requests)`)
      console.log(`POST /ofrep/v1/evaluate/flags/…: ${result.ofrep.perSecond.toFixed(0)} req/s (${result.ofrep.requests} requests)`)
      const ratios = result.ofrep.rounds.map((rate, i) => (rate / result.health.rounds[i]!).toFixed(2))
      console.log(`ofrep/health by round: ${ratios.join(" ")}; over all rounds ${(result.ofrep.perSecond / result.health.perSecond).toFixed(2)}`)
      console.log(`flags: ofrep/health = ${medianRatio(result.ofrep.rounds, result.health.rounds).toFixed(2)}`)
    } finally {
      await database?.drop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
