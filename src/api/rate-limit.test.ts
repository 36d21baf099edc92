// Rate limits on /v1: per principal and per client IP, each on its own count; 429 with
// Retry-After; webhooks and health never limited; counts shared through Redis; Redis down fails open.
import { serve } from '@hono/node-server';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminToken,
  customerToken,
  testApp,
  uniqueId,
  useTestApp,
  type TestAppBench,
} from '../../test/helpers.js';
import { createLogger } from '../logger.js';
import { freePort } from '../stack/ports.js';
import { createRateLimits, type RateLimitSettings, type RateLimits } from './rate-limit.js';

const REDIS_URL = 'redis://127.0.0.1:6379';

/** Whether the machine's Redis answers; only the shared-count test needs it. */
async function redisAnswers(): Promise<boolean> {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

const redisUp = await redisAnswers();
if (!redisUp) {
  process.stderr.write(
    `rate-limit.test: no Redis at ${REDIS_URL}; skipping the shared-count test (the in-memory tests run)\n`,
  );
}

const t: TestAppBench = useTestApp('rate-limit');
const opened: RateLimits[] = [];

afterAll(async () => {
  await Promise.all(opened.map((limits) => limits.close()));
});

function limitedApp(
  settings: Partial<RateLimitSettings>,
  options: { trustProxy?: boolean; lines?: string[] } = {},
) {
  const logger = createLogger({
    level: options.lines ? 'warn' : 'silent',
    destination: { write: (line: string) => void options.lines?.push(line) },
  });
  const limits = createRateLimits(
    { perCustomer: 0, perIp: 0, windowSeconds: 60, ...settings },
    logger,
  );
  opened.push(limits);
  const app = testApp(
    t.db,
    t.temporal,
    t.taskQueue,
    { rateLimits: limits, logger },
    { security: { trustProxy: options.trustProxy ?? false } },
  );
  return { app, limits };
}

type LimitedApp = ReturnType<typeof limitedApp>['app'];

/** GET /v1/prices as `token` (none: unauthenticated) from socket address `ip`. */
function get(
  app: LimitedApp,
  token: string | undefined,
  ip: string | undefined,
  headers: Record<string, string> = {},
  path = '/v1/prices',
) {
  return app.request(
    path,
    { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } },
    ip ? { incoming: { socket: { remoteAddress: ip } } } : undefined,
  );
}

async function statuses(requests: Array<() => Response | Promise<Response>>): Promise<number[]> {
  const out: number[] = [];
  for (const request of requests) out.push((await request()).status);
  return out;
}

async function expectRateLimited(res: Response, windowSeconds: number, mentions: RegExp) {
  expect(res.status).toBe(429);
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(windowSeconds);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe('rate_limited');
  expect(body.error.message).toMatch(mentions);
  expect(body.error.message).toMatch(/Retry after \d+ s/);
}

const customer = () => customerToken(randomUUID());

describe('in memory (the default)', () => {
  it('refuses a principal past its limit with 429 and Retry-After; another principal goes on', async () => {
    const { app } = limitedApp({ perCustomer: 3 });
    const [alice, bob] = await Promise.all([customer(), customer()]);
    expect(await statuses([1, 2, 3].map(() => () => get(app, alice, undefined)))).toEqual([
      200, 200, 200,
    ]);
    await expectRateLimited(
      await get(app, alice, undefined),
      60,
      /this account: at most 3 per 60 s/,
    );
    expect((await get(app, bob, undefined)).status).toBe(200);

    const metrics = await (await app.request('/metrics')).text();
    expect(metrics).toMatch(/creditflow_rate_limited_total\{scope="customer"\} 1\b/);
  });

  it('refuses an address past its limit, unauthenticated requests included; another address goes on', async () => {
    const { app } = limitedApp({ perIp: 3 });
    const ip = '198.51.100.1';
    expect(
      await statuses([
        async () => get(app, await customer(), ip),
        async () => get(app, await customer(), ip),
        () => get(app, undefined, ip),
      ]),
    ).toEqual([200, 200, 401]);
    const fresh = await customer();
    await expectRateLimited(await get(app, fresh, ip), 60, /this address: at most 3 per 60 s/);
    // A bad token is limited before authentication is even tried.
    expect((await get(app, 'not-a-token', ip)).status).toBe(429);
    expect((await get(app, fresh, '198.51.100.2')).status).toBe(200);
  });

  it('tells the client its limit, what is left and when the window ends, for the tighter limit', async () => {
    const { app } = limitedApp({ perCustomer: 3, perIp: 10 });
    const alice = await customer();
    const ip = '198.51.100.20';
    const first = await get(app, alice, ip);
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-limit')).toBe('3');
    expect(first.headers.get('ratelimit-remaining')).toBe('2');
    const reset = Number(first.headers.get('ratelimit-reset'));
    expect(reset).toBeGreaterThanOrEqual(1);
    expect(reset).toBeLessThanOrEqual(60);
    await get(app, alice, ip);
    const third = await get(app, alice, ip);
    expect(third.headers.get('ratelimit-remaining')).toBe('0');
    const refused = await get(app, alice, ip);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('ratelimit-remaining')).toBe('0');
    expect(refused.headers.get('ratelimit-limit')).toBe('3');
    // Unauthenticated, only the address's limit applies: 10, of which 5 are now spent.
    const anonymous = await get(app, undefined, ip);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('ratelimit-limit')).toBe('10');
    expect(anonymous.headers.get('ratelimit-remaining')).toBe('5');
  });

  it('declares 429 and 503 on every /v1 operation of the OpenAPI document', async () => {
    const { app } = limitedApp({});
    const doc = (await (await app.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    const operations = Object.entries(doc.paths)
      .filter(([path]) => path.startsWith('/v1/'))
      .flatMap(([path, item]) =>
        Object.entries(item).map(([method, op]) => ({ path, method, op })),
      );
    expect(operations.length).toBeGreaterThan(30);
    for (const { path, method, op } of operations) {
      expect(Object.keys(op.responses), `${method} ${path}`).toEqual(
        expect.arrayContaining(['429', '503']),
      );
    }
    const webhooks = Object.entries(doc.paths).filter(([path]) => path.startsWith('/webhooks/'));
    for (const [, item] of webhooks) {
      for (const op of Object.values(item)) expect(op.responses['429']).toBeUndefined();
    }
  });

  it('counts per principal and per address separately', async () => {
    const { app } = limitedApp({ perCustomer: 2, perIp: 4 });
    const [alice, bob, admin] = await Promise.all([customer(), customer(), adminToken()]);
    const ip = '198.51.100.10';
    // Alice spends her own limit: the address still serves Bob.
    expect(await statuses([1, 2, 3].map(() => () => get(app, alice, ip)))).toEqual([200, 200, 429]);
    expect((await get(app, bob, ip)).status).toBe(200);
    // That was the address's fourth request: it is spent for everyone, Bob's limit is not.
    expect((await get(app, admin, ip)).status).toBe(429);
    expect((await get(app, bob, '198.51.100.11')).status).toBe(200);
    // An admin token is a principal like any other.
    expect(await statuses([1, 2, 3].map(() => () => get(app, admin, '198.51.100.12')))).toEqual([
      200, 200, 429,
    ]);
  });

  it('reads X-Forwarded-For only behind a trusted proxy, and then its last entry', async () => {
    const direct = limitedApp({ perIp: 2 }).app;
    const token = await customer();
    const spoofed = (n: number) => ({ 'x-forwarded-for': `10.0.0.${n}` });
    expect(
      await statuses([1, 2, 3].map((n) => () => get(direct, token, '198.51.100.20', spoofed(n)))),
    ).toEqual([200, 200, 429]);

    const proxied = limitedApp({ perIp: 2 }, { trustProxy: true }).app;
    const proxy = '10.1.1.1';
    const via = (client: string) => ({ 'x-forwarded-for': client });
    expect(
      await statuses([
        () => get(proxied, token, proxy, via('203.0.113.5')),
        // What the client put in front of the proxy's entry does not make it someone else.
        () => get(proxied, token, proxy, via('1.2.3.4, 203.0.113.5')),
        () => get(proxied, token, proxy, via('5.6.7.8, 203.0.113.5')),
        () => get(proxied, token, proxy, via('203.0.113.6')),
      ]),
    ).toEqual([200, 200, 429, 200]);
  });

  it('takes the address from the socket when served over HTTP', async () => {
    const { app } = limitedApp({ perIp: 2 });
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    try {
      const { port } = server.address() as AddressInfo;
      const token = await customer();
      const codes: number[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/v1/prices`, {
          headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': `10.9.9.${i}` },
        });
        codes.push(res.status);
        await res.body?.cancel();
      }
      expect(codes).toEqual([200, 200, 429]);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('never limits the webhooks, health, metrics or docs', async () => {
    const { app } = limitedApp({ perCustomer: 1, perIp: 1 });
    const ip = '198.51.100.30';
    for (let i = 0; i < 5; i++) {
      for (const path of ['/healthz', '/metrics', '/openapi.json']) {
        expect((await get(app, undefined, ip, {}, path)).status, path).toBe(200);
      }
      const stripe = await app.request(
        '/webhooks/stripe',
        { method: 'POST', headers: { 'stripe-signature': 't=1,v1=00' }, body: '{}' },
        { incoming: { socket: { remoteAddress: ip } } },
      );
      expect(stripe.status).not.toBe(429);
      const sms = await app.request(
        '/webhooks/sms',
        { method: 'POST', headers: { 'x-signature': 't=1,sha256=00' }, body: '{}' },
        { incoming: { socket: { remoteAddress: ip } } },
      );
      expect(sms.status).not.toBe(429);
    }
    expect((await get(app, await customer(), ip)).status).toBe(200);
    expect((await get(app, await customer(), ip)).status).toBe(429);
  });
});

describe('through Redis', () => {
  it.skipIf(!redisUp)('two API processes share one count', async () => {
    const keyPrefix = uniqueId('creditflow-test-ratelimit');
    const settings = { redisUrl: REDIS_URL, keyPrefix, perCustomer: 4 };
    const first = limitedApp(settings);
    const second = limitedApp(settings);
    expect(first.limits.backend).toBe('redis');
    expect(await first.limits.ready()).toBe(true);
    expect(await second.limits.ready()).toBe(true);
    const token = await customer();
    expect(
      await statuses([
        () => get(first.app, token, undefined),
        () => get(second.app, token, undefined),
        () => get(first.app, token, undefined),
        () => get(second.app, token, undefined),
      ]),
    ).toEqual([200, 200, 200, 200]);
    await expectRateLimited(await get(first.app, token, undefined), 60, /this account/);
    await expectRateLimited(await get(second.app, token, undefined), 60, /this account/);
    // Each app on its own (another prefix) would have let the fifth through.
    const alone = limitedApp({ ...settings, keyPrefix: uniqueId('creditflow-test-ratelimit') });
    expect(await alone.limits.ready()).toBe(true);
    expect((await get(alone.app, token, undefined)).status).toBe(200);
  });

  it('lets requests through with a warning and a metric while Redis does not answer', async () => {
    const lines: string[] = [];
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const { app, limits } = limitedApp(
      { redisUrl: closed, keyPrefix: uniqueId('creditflow-test-ratelimit'), perCustomer: 1 },
      { lines },
    );
    expect(limits.backend).toBe('redis');
    const token = await customer();
    expect(await statuses([1, 2, 3].map(() => () => get(app, token, undefined)))).toEqual([
      200, 200, 200,
    ]);
    const metrics = await (await app.request('/metrics')).text();
    expect(metrics).toMatch(/creditflow_rate_limit_store_errors_total\{scope="customer"\} 3\b/);
    const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(warnings.some((w) => w.level === 40 && /rate-limit store/.test(w.msg))).toBe(true);
  });
});
