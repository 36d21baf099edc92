// OpenTelemetry tracing: off unless an OTLP endpoint is configured. When on, the process gets a
// tracer provider (W3C trace context, async-local context) whose spans go to the endpoint over
// OTLP/HTTP; the Temporal interceptors (temporal-interceptors.ts) and the HTTP middleware
// (http.ts) create the spans that make one trace of an API call, its workflow and activities.
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-node';

export interface Tracing {
  /** What every span of this process says about it (service.name). */
  resource: Resource;
  /** Where finished spans go; the worker's workflow span sink feeds the same one. */
  spanProcessor: SpanProcessor;
  /** Sends what is buffered; called when the process stops. */
  flush(): Promise<void>;
}

export interface TracingOptions {
  /** OTLP/HTTP traces URL (…/v1/traces); tracing is off when neither this nor `exporter` is set. */
  endpoint?: string | undefined;
  /** OTEL_SERVICE_NAME, else the process's own name. */
  serviceName: string;
  /** Replaces the OTLP exporter (tests). */
  exporter?: SpanExporter;
}

// The OpenTelemetry API is process-global (one tracer provider, one context manager), so the
// process registers one provider: `npm start` runs the API and the worker in one process.
let registered: Tracing | undefined;

/** Starts tracing for this process, or returns undefined when it is off. */
export function startTracing(options: TracingOptions): Tracing | undefined {
  if (registered) return registered;
  if (!options.endpoint && !options.exporter) return undefined;
  const resource = Resource.default().merge(new Resource({ 'service.name': options.serviceName }));
  // Headers, timeout and compression of the exporter follow the standard OTEL_EXPORTER_OTLP_* variables.
  const exporter = options.exporter ?? new OTLPTraceExporter({ url: options.endpoint });
  const spanProcessor = new BatchSpanProcessor(exporter);
  const provider = new NodeTracerProvider({ resource, spanProcessors: [spanProcessor] });
  provider.register();
  registered = {
    resource,
    spanProcessor,
    flush: () => provider.forceFlush(),
  };
  return registered;
}
