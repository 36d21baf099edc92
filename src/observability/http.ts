// Per-request observability for the Hono app: a request id (the caller's X-Request-Id when it is
// a sane one, else a new uuid, echoed in the response) that every log line of the request and the
// workflows it starts carry, and a server span (joining the caller's W3C traceparent) around it.
import { SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import type { Context, MiddlewareHandler, Next } from 'hono';
import { requestId } from 'hono/request-id';
import { routePath } from 'hono/route';
import { runInRequest } from './request-context.js';

const tracer = trace.getTracer('creditflow-api');

/** Runs the rest of the request inside its request context. */
const requestScope: MiddlewareHandler = (c: Context, next: Next) =>
  runInRequest((c.get('requestId') as string | undefined) ?? '', next);

/**
 * One SERVER span per request, child of the caller's traceparent when it sends one. Without a
 * tracer provider (tracing off) the OpenTelemetry API hands out spans that record nothing.
 */
const serverSpan: MiddlewareHandler = async (c: Context, next: Next) => {
  const parent = propagation.extract(context.active(), Object.fromEntries(c.req.raw.headers));
  const method = c.req.method;
  const span = tracer.startSpan(
    method,
    {
      kind: SpanKind.SERVER,
      attributes: {
        'http.request.method': method,
        'url.path': new URL(c.req.url).pathname,
        'creditflow.request_id': c.get('requestId') ?? '',
      },
    },
    parent,
  );
  try {
    await context.with(trace.setSpan(parent, span), next);
  } finally {
    const route = routePath(c, -1) || 'unmatched';
    span.updateName(`${method} ${route}`);
    span.setAttribute('http.route', route);
    span.setAttribute('http.response.status_code', c.res.status);
    if (c.res.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }
};

/** The middleware, in order: request id, its context, the span. */
export function observeRequests(): MiddlewareHandler[] {
  return [requestId(), requestScope, serverSpan];
}
