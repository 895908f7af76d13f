import { Effect, Metric, MetricBoundaries, MetricKeyType, MetricLabel, MetricState } from "effect"
import type { MetricPair } from "effect"

/**
 * The platform's metrics. They are Effect `Metric`s, so any code in the app records them
 * with `Metric.increment` / `Metric.update`; `renderPrometheus` turns the registry into the
 * Prometheus text exposition format served at `/metrics`.
 */

const secondsBoundaries = MetricBoundaries.fromIterable([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
])

export const httpRequestsTotal = Metric.counter("http_requests_total", {
  description: "HTTP requests by method, route and status",
  incremental: true
})

export const httpRequestDuration = Metric.histogram(
  "http_request_duration_seconds",
  secondsBoundaries,
  "HTTP request duration in seconds by method, route and status"
)

export const jobsEnqueuedTotal = Metric.counter("jobs_enqueued_total", {
  description: "Jobs enqueued by task",
  incremental: true
})
export const jobsCompletedTotal = Metric.counter("jobs_completed_total", {
  description: "Jobs completed successfully by task",
  incremental: true
})
export const jobsFailedTotal = Metric.counter("jobs_failed_total", {
  description: "Job attempts that failed by task",
  incremental: true
})
export const jobsDeadLetteredTotal = Metric.counter("jobs_dead_lettered_total", {
  description: "Jobs moved to the dead-letter table by task",
  incremental: true
})
export const jobDuration = Metric.histogram(
  "job_duration_seconds",
  secondsBoundaries,
  "Job handler duration in seconds by task"
)

export const cacheHitsTotal = Metric.counter("cache_hits_total", {
  description: "Cache hits by cache backend",
  incremental: true
})
export const cacheMissesTotal = Metric.counter("cache_misses_total", {
  description: "Cache misses by cache backend",
  incremental: true
})

/**
 * An updater of `metric` (one made by `Metric.counter` / `Metric.histogram`, not a tagged one)
 * with labels fixed once, for hot paths. `Metric.tagged(m, k, v)` merges label arrays on
 * every update into a fresh array, which misses Effect's per-array hook cache, so each update
 * hashes the whole metric key into the registry: about 1.7 µs per update measured here, more
 * than a no-op job's share of graphile-worker. The fixed array hits that cache.
 */
export const labelled = <Type, In, Out>(
  metric: Metric.Metric<Type, In, Out>,
  labels: Readonly<Record<string, string>>
): ((value: In) => void) => {
  const fixed = Object.entries(labels).map(([key, value]) => MetricLabel.make(key, value))
  return (value) => metric.unsafeUpdate(value, fixed)
}

/** A gauge computed at scrape time (e.g. queue depth read from Postgres). */
export interface ScrapedGauge {
  readonly name: string
  readonly help: string
  readonly samples: ReadonlyArray<{ readonly labels: Record<string, string>; readonly value: number }>
}

const escapeLabel = (value: string) =>
  value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

const formatLabels = (labels: ReadonlyArray<readonly [string, string]>) =>
  labels.length === 0
    ? ""
    : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`

const formatNumber = (value: number | bigint) => {
  if (typeof value === "bigint") return value.toString()
  if (value === Number.POSITIVE_INFINITY) return "+Inf"
  if (value === Number.NEGATIVE_INFINITY) return "-Inf"
  return String(value)
}

interface Family {
  type: "counter" | "gauge" | "histogram"
  help: string
  lines: Array<string>
}

const renderPair = (families: Map<string, Family>, pair: MetricPair.MetricPair.Untyped) => {
  const key = pair.metricKey
  const name = key.name
  const labels = key.tags.map((t) => [t.key, t.value] as const)
  const keyType = key.keyType
  const state = pair.metricState
  const family = (type: Family["type"]) => {
    let existing = families.get(name)
    if (!existing) {
      existing = { type, help: key.description._tag === "Some" ? key.description.value : name, lines: [] }
      families.set(name, existing)
    }
    return existing
  }
  if (MetricKeyType.isCounterKey(keyType) && MetricState.isCounterState(state)) {
    family("counter").lines.push(`${name}${formatLabels(labels)} ${formatNumber(state.count)}`)
  } else if (MetricKeyType.isGaugeKey(keyType) && MetricState.isGaugeState(state)) {
    family("gauge").lines.push(`${name}${formatLabels(labels)} ${formatNumber(state.value)}`)
  } else if (MetricKeyType.isHistogramKey(keyType) && MetricState.isHistogramState(state)) {
    const f = family("histogram")
    for (const [bound, cumulative] of state.buckets) {
      f.lines.push(`${name}_bucket${formatLabels([...labels, ["le", formatNumber(bound)]])} ${cumulative}`)
    }
    f.lines.push(`${name}_bucket${formatLabels([...labels, ["le", "+Inf"]])} ${state.count}`)
    f.lines.push(`${name}_sum${formatLabels(labels)} ${state.sum}`)
    f.lines.push(`${name}_count${formatLabels(labels)} ${state.count}`)
  }
}

/** Renders every registered Effect metric plus the scraped gauges as Prometheus text. */
export const renderPrometheus = (scraped: ReadonlyArray<ScrapedGauge>) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const families = new Map<string, Family>()
    for (const pair of pairs) renderPair(families, pair)
    for (const gauge of scraped) {
      const f: Family = { type: "gauge", help: gauge.help, lines: [] }
      for (const sample of gauge.samples) {
        f.lines.push(`${gauge.name}${formatLabels(Object.entries(sample.labels))} ${formatNumber(sample.value)}`)
      }
      families.set(gauge.name, f)
    }
    const out: Array<string> = []
    for (const [name, f] of [...families].sort(([a], [b]) => a.localeCompare(b))) {
      out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.lines)
    }
    return out.join("\n") + "\n"
  })
