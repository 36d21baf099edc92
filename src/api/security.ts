// What every response carries for safety (secure headers, no caching of money), the CORS
// allow-list, and who may read /metrics.
import { timingSafeEqual, createHash } from 'node:crypto';
import { Hono, type MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import { secureHeaders } from 'hono/secure-headers';
import type { Registry } from 'prom-client';
import { ConfigError, type Config } from '../config.js';
import { ApiError, errorBody } from './errors.js';

/** One year; browsers only honour HSTS that arrives over TLS. */
const HSTS = 'max-age=31536000; includeSubDomains';

/** Request headers a browser client on an allowed origin may send. */
export const CORS_ALLOWED_HEADERS = ['Authorization', 'Content-Type', 'Idempotency-Key'];
/** Response headers such a client may read. */
const CORS_EXPOSED_HEADERS = [
  'Retry-After',
  'Location',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
];

export interface SecurityOptions {
  /** Trust `X-Forwarded-Proto` from the proxy in front (TRUST_PROXY). */
  trustProxy?: boolean;
  /** Origins allowed to call the API from a browser (CORS_ORIGINS); none: same-origin only. */
  corsOrigins?: readonly string[];
  /** Who may read GET /metrics on the API's port; `open` when absent (tests, local runs). */
  metrics?: MetricsAccess;
}

/**
 * How GET /metrics on the API port answers: `open` to anyone (local development), `token` only
 * with `Authorization: Bearer <METRICS_TOKEN>`, `elsewhere` not at all (served on METRICS_PORT).
 */
export type MetricsAccess =
  { mode: 'open' } | { mode: 'token'; token: string } | { mode: 'elsewhere' };

/** True when the request reached us over TLS, directly or (if trusted) through the proxy. */
function overTls(url: string, forwardedProto: string | undefined, trustProxy: boolean): boolean {
  if (new URL(url).protocol === 'https:') return true;
  if (!trustProxy || !forwardedProto) return false;
  // The first hop is the one the client spoke to.
  return forwardedProto.split(',')[0]!.trim().toLowerCase() === 'https';
}

/**
 * Secure headers on every response; HSTS only over TLS; on /v1 (every money response: wallet,
 * transactions, checkouts, verifications, orders, refunds, admin views) no caching and no framing
 * or loading of anything, since it is JSON (or an event stream) and never a page.
 */
export function secureResponses({ trustProxy = false }: SecurityOptions = {}): MiddlewareHandler {
  const common = secureHeaders({
    strictTransportSecurity: false,
    xFrameOptions: 'DENY',
    referrerPolicy: 'no-referrer',
    crossOriginResourcePolicy: 'same-origin',
  });
  return async (c, next) => {
    await common(c, next);
    if (overTls(c.req.url, c.req.header('x-forwarded-proto'), trustProxy)) {
      c.res.headers.set('Strict-Transport-Security', HSTS);
    }
    if (c.req.path.startsWith('/v1/') || c.req.path === '/v1') {
      c.res.headers.set('Cache-Control', 'no-store');
      c.res.headers.set('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
    }
  };
}

/**
 * CORS for the origins in the allow-list only: their preflights are answered (credentials and
 * the Authorization, Idempotency-Key and Content-Type headers allowed), a preflight from any
 * other origin is refused with 403, and responses to other origins carry no CORS headers.
 */
export function corsAllowList(origins: readonly string[]): MiddlewareHandler {
  const allowed = new Set(origins);
  const allowedCors = cors({
    origin: (origin) => (allowed.has(origin) ? origin : null),
    credentials: true,
    allowHeaders: CORS_ALLOWED_HEADERS,
    allowMethods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposeHeaders: CORS_EXPOSED_HEADERS,
    maxAge: 600,
  });
  return async (c, next) => {
    const origin = c.req.header('origin');
    const preflight = c.req.method === 'OPTIONS' && !!c.req.header('access-control-request-method');
    if (origin && allowed.has(origin)) return allowedCors(c, next);
    if (preflight) {
      c.header('Vary', 'Origin');
      throw new ApiError(
        403,
        'cors_origin_not_allowed',
        origin
          ? `The origin ${origin} may not call this API from a browser; ask for it to be added to CORS_ORIGINS.`
          : 'A preflight request needs an Origin header.',
      );
    }
    await next();
    if (allowed.size > 0) c.header('Vary', 'Origin', { append: true });
  };
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** True when the Authorization header carries exactly `Bearer <token>` (constant-time compare). */
function hasBearer(header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  return !!match && timingSafeEqual(digest(match[1]!), digest(token));
}

/** Guards GET /metrics on the API port according to `access`. */
export function guardMetrics(access: MetricsAccess): MiddlewareHandler {
  return async (c, next) => {
    if (access.mode === 'elsewhere') {
      return c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path}.`), 404);
    }
    if (access.mode === 'token' && !hasBearer(c.req.header('authorization'), access.token)) {
      c.header('WWW-Authenticate', 'Bearer realm="metrics"');
      return c.json(
        errorBody(
          'metrics_unauthorized',
          'GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>".',
        ),
        401,
      );
    }
    await next();
    return undefined;
  };
}

/** The Prometheus exposition on its own port (METRICS_PORT), token-guarded when METRICS_TOKEN is set. */
export function metricsApp(registry: Registry, token?: string): Hono {
  const app = new Hono();
  if (token) app.use('/metrics', guardMetrics({ mode: 'token', token }));
  app.get('/metrics', async (c) => {
    c.header('content-type', registry.contentType);
    return c.body(await registry.metrics());
  });
  app.notFound((c) => c.json(errorBody('not_found', 'Only GET /metrics is served here.'), 404));
  return app;
}

/**
 * Where the API exposes its metrics. METRICS_PORT: on that port only; else METRICS_TOKEN: on the
 * API port behind the token; else open on the API port, which only development and tests get —
 * in production the API refuses to start rather than publish its metrics to anyone.
 */
export function metricsAccess(config: Config): MetricsAccess {
  if (config.metrics.port !== undefined) return { mode: 'elsewhere' };
  if (config.metrics.token) return { mode: 'token', token: config.metrics.token };
  if (config.nodeEnv === 'production') {
    throw new ConfigError([
      'METRICS_PORT or METRICS_TOKEN: one is required when NODE_ENV=production, so /metrics is not public ' +
        '(METRICS_PORT serves it on its own port, on METRICS_HOST, 127.0.0.1 by default; METRICS_TOKEN ' +
        'puts it behind a bearer token)',
    ]);
  }
  return { mode: 'open' };
}
