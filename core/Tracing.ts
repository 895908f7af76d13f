import { NodeSdk } from "@effect/opentelemetry"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base"
import { Effect, FiberRef, Layer, type Tracer } from "effect"

export interface TracingOptions {
  /** OTLP/HTTP base endpoint (OTEL_EXPORTER_OTLP_ENDPOINT); `/v1/traces` is appended. */
  readonly endpoint: string | undefined
  readonly serviceName: string
  /** Fraction of new traces kept (0..1); children follow their parent's decision. */
  readonly sampleRatio: number
}

/**
 * Spans for HTTP requests, SQL statements and jobs, exported over OTLP/HTTP. Without an
 * endpoint the tracer is switched off entirely: Effect's tracer is on by default and a span
 * per request costs 30-50% of a trivial route's throughput for nothing.
 */
export const layerTracing = (options: TracingOptions): Layer.Layer<never> =>
  options.endpoint === undefined
    ? Layer.setTracerEnabled(false)
    : Layer.discard(
        NodeSdk.layer(() => ({
          resource: { serviceName: options.serviceName },
          spanProcessor: new BatchSpanProcessor(
            new OTLPTraceExporter({ url: `${options.endpoint!.replace(/\/$/, "")}/v1/traces` })
          ),
          tracerConfig: {
            sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio) })
          }
        }))
      )

/**
 * `Effect.withSpan` for hot paths. With the tracer off (no exporter) Effect still makes a
 * no-op span, provides it in the fiber's context, and ends it: two context swaps and half a
 * dozen steps per call. This checks the flag in one step and runs the effect as it is when
 * tracing is off. No stack is captured: it would always point at the same line.
 */
export const traced =
  (name: string, options?: Omit<Tracer.SpanOptions, "captureStackTrace">) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiberRuntime<A, E, R>((fiber) =>
      fiber.getFiberRef(FiberRef.currentTracerEnabled)
        ? Effect.withSpan(self, name, { ...options, captureStackTrace: false })
        : self
    )
