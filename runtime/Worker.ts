import type { SqlClient } from "@effect/sql"
import { Duration, Effect, FiberRef, FiberRefs, Layer, LogLevel, Runtime, Schema } from "effect"
import { type LogFunctionFactory, Logger as WorkerLogger, parseCronItems, run } from "graphile-worker"
import { PgPool } from "../core/Database.ts"
import { makeTaskList } from "../core/JobRunner.ts"
import type { Envelope } from "../core/Jobs.ts"
import type { Registry } from "../core/Registry.ts"

export interface WorkerOptions {
  readonly registry: Registry
  readonly concurrency: number
  readonly localQueueSize: number
  readonly pollInterval: number
  readonly shutdownTimeout: Duration.Duration
  /** Runs cron items; on by default. */
  readonly cron?: boolean
}

type LogFunction = ReturnType<LogFunctionFactory>
/** What graphile-worker's `Logger.scope` returns for a scope of type T. */
type ScopedLogger<T extends {}> = ReturnType<typeof WorkerLogger.prototype.scope<T>>

/**
 * graphile-worker scopes its logger for every job it runs (`logger.scope({ label: "job",
 * taskIdentifier, jobId })`), and the stock `Logger` merges the scopes into a fresh object
 * each time: about 1.6 µs per job in a profile of the jobs benchmark, for lines that are
 * nearly always dropped. Only the label reaches the log lines, so a scope here is the
 * logger for its label, made once per label and shared.
 */
class LabelledLogger extends WorkerLogger {
  constructor(
    private readonly family: (label: string | undefined) => LabelledLogger,
    private readonly label: string | undefined,
    log: LogFunction
  ) {
    super(() => log, label === undefined ? {} : { label })
  }

  override scope<T extends {}>(additional: Partial<T>): ScopedLogger<T> {
    const label = (additional as { readonly label?: string }).label ?? this.label
    const scoped = label === this.label ? this : this.family(label)
    // The scope's other keys are not kept (no line shows them), though the type says they are.
    return scoped as unknown as ScopedLogger<T>
  }
}

/** graphile-worker's log lines go through Effect's logger, annotated as the worker's. */
export const workerLogger = (runtime: Runtime.Runtime<never>) => {
  const runSync = Runtime.runSync(runtime)
  // graphile-worker logs two lines per job at debug/info: running an Effect for each only
  // for the logger to drop it costs more than the job itself.
  const debugEnabled = LogLevel.lessThanEqual(
    FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMinimumLogLevel),
    LogLevel.Debug
  )
  const logFunction = (label: string | undefined): LogFunction => (level, message) => {
    if (!debugEnabled && (level === "debug" || level === "info")) return
    // A failed attempt is already recorded by Trellis (metrics, dead letters): not an error.
    const failedAttempt = message.startsWith("Failed task")
    const log =
      level === "error" && !failedAttempt
        ? Effect.logError(message)
        : level === "error" || level === "warning"
          ? Effect.logWarning(message)
          : Effect.logDebug(message)
    runSync(log.pipe(Effect.annotateLogs({ component: "graphile-worker", ...(label ? { label } : {}) })))
  }
  // graphile-worker's labels are a handful of fixed words ("worker", "job", "cron", ...).
  const loggers = new Map<string | undefined, LabelledLogger>()
  const family = (label: string | undefined): LabelledLogger => {
    let logger = loggers.get(label)
    if (logger === undefined) loggers.set(label, (logger = new LabelledLogger(family, label, logFunction(label))))
    return logger
  }
  return family(undefined)
}

/** The cron items of the plugins, as graphile-worker parsed items with Trellis envelopes. */
export const cronItems = (registry: Registry) =>
  parseCronItems(
    registry.cron.map(({ item }) => {
      const envelope: Envelope = { data: Schema.encodeSync(item.task.payload)(item.payload ?? {}) }
      return {
        task: item.task.id,
        match: item.schedule,
        identifier: item.id,
        options: {
          ...(item.backfill === undefined ? {} : { backfillPeriod: Duration.toMillis(item.backfill) }),
          ...(item.task.retry ? { maxAttempts: item.task.retry.maxAttempts } : {}),
          ...(item.task.queue ? { queueName: item.task.queue } : {})
        },
        payload: envelope
      }
    })
  )

/**
 * Runs the plugins' tasks and cron items with graphile-worker on the shared pool. Several
 * workers on one database share the queue (row locks) and fire each cron tick once
 * (`known_crontabs`). Closing the scope stops taking jobs and waits for running ones up to
 * the shutdown timeout.
 */
export const layerWorker = (options: WorkerOptions) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const pool = yield* PgPool
      const runtime = yield* Effect.runtime<SqlClient.SqlClient>()
      const taskList = makeTaskList(
        options.registry.tasks.map((t) => t.item),
        runtime
      )
      const runner = yield* Effect.acquireRelease(
        Effect.promise(() =>
          run({
            pgPool: pool,
            taskList,
            parsedCronItems: options.cron === false ? [] : cronItems(options.registry),
            concurrency: options.concurrency,
            pollInterval: options.pollInterval,
            noHandleSignals: true,
            logger: workerLogger(runtime),
            preset: {
              worker: {
                localQueue: { size: options.localQueueSize },
                completeJobBatchDelay: 0,
                failJobBatchDelay: 0,
                gracefulShutdownAbortTimeout: Duration.toMillis(options.shutdownTimeout)
              }
            }
          })
        ),
        (runner) =>
          Effect.promise(() => runner.stop()).pipe(
            Effect.timeout(options.shutdownTimeout),
            Effect.catchAll(() =>
              Effect.logWarning("worker did not stop within the shutdown timeout; killing it").pipe(
                Effect.zipRight(Effect.promise(() => runner.kill()))
              )
            )
          )
      )
      yield* Effect.logInfo("worker started").pipe(
        Effect.annotateLogs({ concurrency: options.concurrency, tasks: options.registry.tasks.length, cron: options.registry.cron.length })
      )
      return runner
    })
  )
