import { NodeSdk } from "@effect/opentelemetry"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base"
import { Layer } from "effect"

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
