// Rate limits on /v1, per client IP and per authenticated principal (rate-limiter-flexible):
// counted in this process by default, shared by every API process through Redis when one is set.
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, MiddlewareHandler } from 'hono';
import { Redis } from 'ioredis';
import { Counter, type Registry } from 'prom-client';
import {
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';
import type { Logger } from '../logger.js';
import type { AuthEnv } from './auth.js';
import { errorBody } from './errors.js';

export interface RateLimitSettings {
  /** Requests one principal (customer or admin token `sub`) may make per window; 0 = unlimited. */
  perCustomer: number;
  /** Requests one client IP may make per window, authenticated or not; 0 = unlimited. */
  perIp: number;
  windowSeconds: number;
  /** Counts in Redis (shared by every API process) when set, in this process otherwise. */
  redisUrl?: string | undefined;
  /** Prefix of the Redis keys, so environments or tests sharing a Redis do not share counts. */
  keyPrefix?: string;
}

/**
 * Generous enough that no honest client (nor the test suite, which calls one app thousands of
 * times) meets them; an operator tightens them per deployment.
 */
export const DEFAULT_RATE_LIMITS = { perCustomer: 1200, perIp: 2400, windowSeconds: 60 } as const;

type Scope = 'ip' | 'customer';

/** A Redis command slower than this counts as a store failure and the request goes through. */
const REDIS_COMMAND_TIMEOUT_MS = 500;
/** At most one store-failure warning per this interval; the metric counts every one. */
const WARN_INTERVAL_MS = 30_000;

/** The counters and, with Redis, its connection: one per API process, closed on stop. */
export interface RateLimits {
  readonly backend: 'memory' | 'redis';
  readonly settings: Required<Omit<RateLimitSettings, 'redisUrl' | 'keyPrefix'>>;
  readonly limiters: Partial<Record<Scope, RateLimiterAbstract>>;
  /** Called with every store failure (the request was let through). */
  onStoreError: (scope: Scope, err: unknown) => void;
  /** Resolves true once the store answers, false after `timeoutMs` (the limits then fail open). */
  ready: (timeoutMs?: number) => Promise<boolean>;
  close: () => Promise<void>;
}

/** Builds the limiters; the API keeps serving when Redis is down (see `onStoreError`). */
export function createRateLimits(settings: RateLimitSettings, logger: Logger): RateLimits {
  const prefix = settings.keyPrefix ?? 'creditflow:ratelimit';
  const duration = settings.windowSeconds;
  const redis = settings.redisUrl
    ? new Redis(settings.redisUrl, {
        // Without a live connection a command fails at once instead of queueing: a request must
        // never wait for the limiter's store.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
        connectTimeout: 2_000,
        retryStrategy: (attempt) => Math.min(attempt * 200, 5_000),
      })
    : undefined;

  let lastWarning = 0;
  let unreported = 0;
  const warnThrottled = (fields: Record<string, unknown>, message: string) => {
    unreported += 1;
    const now = Date.now();
    if (now - lastWarning < WARN_INTERVAL_MS) return;
    logger.warn({ ...fields, failures: unreported }, message);
    lastWarning = now;
    unreported = 0;
  };
  redis?.on('error', (err: Error) =>
    warnThrottled(
      { err: err.message },
      'rate-limit store (Redis) unreachable: requests are not rate limited until it is back',
    ),
  );

  const limiter = (scope: Scope, points: number): RateLimiterAbstract | undefined => {
    if (points === 0) return undefined;
    const keyPrefix = `${prefix}:${scope}`;
    return redis
      ? new RateLimiterRedis({
          storeClient: redis,
          rejectIfRedisNotReady: true,
          keyPrefix,
          points,
          duration,
        })
      : new RateLimiterMemory({ keyPrefix, points, duration });
  };
  const limiters: RateLimits['limiters'] = {};
  const ip = limiter('ip', settings.perIp);
  const customer = limiter('customer', settings.perCustomer);
  if (ip) limiters.ip = ip;
  if (customer) limiters.customer = customer;

  return {
    backend: redis ? 'redis' : 'memory',
    settings: {
      perCustomer: settings.perCustomer,
      perIp: settings.perIp,
      windowSeconds: settings.windowSeconds,
    },
    limiters,
    onStoreError: (scope, err) =>
      warnThrottled(
        { scope, err: err instanceof Error ? err.message : String(err) },
        'rate-limit store failed: request let through unlimited',
      ),
    ready: async (timeoutMs = 2_000) => {
      if (!redis || redis.status === 'ready') return true;
      return new Promise<boolean>((resolve) => {
        const done = (value: boolean) => {
          clearTimeout(timer);
          redis.off('ready', onReady);
          resolve(value);
        };
        const onReady = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        redis.once('ready', onReady);
      });
    },
    close: async () => {
      if (!redis) return;
      // quit() waits for a reply that never comes from an unreachable server.
      if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
      else redis.disconnect();
    },
  };
}

/** Counts refusals and store failures on the app's registry (once per registry). */
export function rateLimitMetrics(registry: Registry) {
  const counter = (name: string, help: string) =>
    (registry.getSingleMetric(name) as Counter<'scope'> | undefined) ??
    new Counter({ name, help, labelNames: ['scope'] as const, registers: [registry] });
  return {
    refused: counter(
      'creditflow_rate_limited_total',
      'Requests refused with 429 by the rate limits, by scope (ip, customer)',
    ),
    storeErrors: counter(
      'creditflow_rate_limit_store_errors_total',
      'Requests let through unlimited because the rate-limit store (Redis) failed, by scope',
    ),
  };
}

/**
 * The client's address: the socket's peer, or behind a trusted proxy (`TRUST_PROXY`) the last
 * X-Forwarded-For entry — the one that proxy appended; earlier entries are the client's to forge.
 * Undefined when the request came without a socket (in-process calls such as tests).
 */
export function clientIp(c: Context, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const forwarded = c.req
      .header('x-forwarded-for')
      ?.split(',')
      .map((part) => part.trim())
      .filter(Boolean)
      .at(-1);
    if (forwarded) return forwarded;
  }
  try {
    // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; count it as a.b.c.d.
    return getConnInfo(c).remote.address?.replace(/^::ffff:(?=\d+\.)/i, '') || undefined;
  } catch {
    return undefined;
  }
}

export type RateLimitMetrics = ReturnType<typeof rateLimitMetrics>;

/** 429 with Retry-After once the key's window is spent; a store failure lets the request through. */
function limitMiddleware(
  limits: RateLimits,
  scope: Scope,
  metrics: RateLimitMetrics,
  keyOf: (c: Context<AuthEnv>) => string | undefined,
  refusal: (retryAfter: number) => string,
): MiddlewareHandler<AuthEnv> {
  const limiter = limits.limiters[scope];
  if (!limiter) return async (_c, next) => next();
  return async (c, next) => {
    const key = keyOf(c);
    if (key === undefined) return next();
    let spent: RateLimiterRes;
    try {
      spent = await limiter.consume(key);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) {
        metrics.storeErrors.inc({ scope });
        limits.onStoreError(scope, rejection);
        return next();
      }
      metrics.refused.inc({ scope });
      const retryAfter = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      return c.json(errorBody('rate_limited', refusal(retryAfter)), 429, {
        'Retry-After': String(retryAfter),
        'RateLimit-Limit': String(limiter.points),
        'RateLimit-Remaining': '0',
        'RateLimit-Reset': String(retryAfter),
      });
    }
    await next();
    setRateLimitHeaders(c, limiter.points, spent);
  };
}

/**
 * RateLimit-Limit/-Remaining/-Reset on every limited answer, for the tighter of the two limits:
 * the per-IP middleware runs outside the per-account one, so it only overwrites what that one
 * set when its own remainder is smaller.
 */
function setRateLimitHeaders(c: Context, points: number, spent: RateLimiterRes): void {
  const remaining = Math.max(0, spent.remainingPoints);
  const already = c.res.headers.get('RateLimit-Remaining');
  if (already !== null && Number(already) <= remaining) return;
  try {
    c.res.headers.set('RateLimit-Limit', String(points));
    c.res.headers.set('RateLimit-Remaining', String(remaining));
    c.res.headers.set('RateLimit-Reset', String(Math.max(1, Math.ceil(spent.msBeforeNext / 1000))));
  } catch {
    // An immutable response (a fetched one passed through) keeps its headers as they are.
  }
}

/** Per client IP; registered before authentication so floods of bad tokens are limited too. */
export function rateLimitByIp(
  limits: RateLimits,
  metrics: RateLimitMetrics,
  { trustProxy }: { trustProxy: boolean },
): MiddlewareHandler<AuthEnv> {
  return limitMiddleware(
    limits,
    'ip',
    metrics,
    (c) => clientIp(c, trustProxy),
    (retryAfter) =>
      `Too many requests from this address: at most ${limits.settings.perIp} per ${limits.settings.windowSeconds} s. Retry after ${retryAfter} s.`,
  );
}

/** Per authenticated principal; registered after authentication. */
export function rateLimitByCustomer(
  limits: RateLimits,
  metrics: RateLimitMetrics,
): MiddlewareHandler<AuthEnv> {
  return limitMiddleware(
    limits,
    'customer',
    metrics,
    (c) => c.get('auth').sub,
    (retryAfter) =>
      `Too many requests for this account: at most ${limits.settings.perCustomer} per ${limits.settings.windowSeconds} s. Retry after ${retryAfter} s.`,
  );
}
