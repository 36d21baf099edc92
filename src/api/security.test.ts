// What every response says about itself (secure headers, no caching of money, HSTS only over
// TLS), the CORS allow-list, and the guard on /metrics.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  adminToken,
  createCustomer,
  customerToken,
  testApp,
  useTestApp,
} from '../../test/helpers.js';
import { loadConfig } from '../config.js';
import { createMetrics } from '../metrics.js';
import { metricsAccess, metricsApp } from './security.js';

const t = useTestApp('security');

const bearer = (token: string, extra: Record<string, string> = {}) => ({
  headers: { authorization: `Bearer ${token}`, ...extra },
});

describe('secure headers', () => {
  it('sends nosniff, no framing and no referrer on every response, public or not', async () => {
    const customer = await createCustomer(t.db);
    for (const res of [
      await t.app.request('/healthz'),
      await t.app.request('/openapi.json'),
      await t.app.request('/nope'),
      await t.app.request('/v1/wallet'),
      await t.app.request('/v1/wallet', bearer(await customerToken(customer.id))),
    ]) {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('cross-origin-resource-policy')).toBe('same-origin');
    }
  });

  it('marks every /v1 response no-store, answers and refusals alike', async () => {
    const doc = (await (await t.app.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    // Every GET route (path parameters filled with an id nobody has): wallet, transactions,
    // checkouts, verifications, orders, refunds, admin views…
    const paths = Object.entries(doc.paths)
      .filter(([path, ops]) => path.startsWith('/v1/') && 'get' in ops)
      .map(([path]) => path.replace(/\{[^}]+\}/g, randomUUID()))
      .filter((path) => path !== '/v1/wallet/events');
    for (const area of ['wallet', 'checkouts', 'verifications', 'orders', 'refunds', 'admin']) {
      expect(
        paths.some((p) => p.startsWith(`/v1/${area}`)),
        area,
      ).toBe(true);
    }
    const customer = await createCustomer(t.db);
    const tokens = [await customerToken(customer.id), await adminToken()];
    for (const path of paths) {
      for (const token of tokens) {
        const res = await t.app.request(path, bearer(token));
        expect(res.status, path).toBeLessThan(500);
        expect(res.headers.get('cache-control'), path).toBe('no-store');
        expect(res.headers.get('content-security-policy'), path).toContain("default-src 'none'");
      }
    }
    const refused = await t.app.request('/v1/wallet');
    expect(refused.status).toBe(401);
    expect(refused.headers.get('cache-control')).toBe('no-store');
    const posted = await t.app.request('/v1/checkouts', {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens[0]}`, 'content-type': 'application/json' },
      body: JSON.stringify({ pack: 'no-such-pack' }),
    });
    expect(posted.status).toBeGreaterThanOrEqual(400);
    expect(posted.headers.get('cache-control')).toBe('no-store');
  });

  it('leaves the cache headers of public assets alone', async () => {
    const res = await t.app.request('/healthz');
    expect(res.headers.get('cache-control')).toBeNull();
  });

  it('sends HSTS over TLS only, and trusts X-Forwarded-Proto only when told to', async () => {
    const plain = await t.app.request('http://api.example/healthz');
    expect(plain.headers.get('strict-transport-security')).toBeNull();
    const tls = await t.app.request('https://api.example/healthz');
    expect(tls.headers.get('strict-transport-security')).toMatch(/^max-age=\d{7,}/);

    const forwarded = { headers: { 'x-forwarded-proto': 'https' } };
    const untrusted = await t.app.request('http://api.example/healthz', forwarded);
    expect(untrusted.headers.get('strict-transport-security')).toBeNull();
    const behindProxy = testApp(
      t.db,
      t.temporal,
      t.taskQueue,
      {},
      { security: { trustProxy: true } },
    );
    const trusted = await behindProxy.request('http://api.example/healthz', forwarded);
    expect(trusted.headers.get('strict-transport-security')).toMatch(/^max-age=\d{7,}/);
    const forwardedHttp = await behindProxy.request('http://api.example/healthz', {
      headers: { 'x-forwarded-proto': 'http' },
    });
    expect(forwardedHttp.headers.get('strict-transport-security')).toBeNull();
  });
});

describe('CORS allow-list', () => {
  const allowed = 'https://app.example.com';
  const corsApp = () =>
    testApp(t.db, t.temporal, t.taskQueue, {}, { security: { corsOrigins: [allowed] } });
  const preflight = (origin: string) => ({
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, idempotency-key, content-type',
    },
  });

  it('answers the preflight of an allowed origin with credentials and the API headers', async () => {
    const res = await corsApp().request('/v1/checkouts', preflight(allowed));
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const headers = res.headers.get('access-control-allow-headers')!.toLowerCase().split(',');
    expect(headers).toEqual(
      expect.arrayContaining(['authorization', 'idempotency-key', 'content-type']),
    );
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('vary')).toContain('Origin');
  });

  it('lets an allowed origin read the answer to a real request', async () => {
    const customer = await createCustomer(t.db);
    const res = await corsApp().request(
      '/v1/wallet',
      bearer(await customerToken(customer.id), { origin: allowed }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
  });

  it('refuses the preflight of any other origin and gives its requests no CORS headers', async () => {
    for (const origin of ['https://evil.example', 'https://app.example.com.evil.example', 'null']) {
      const res = await corsApp().request('/v1/checkouts', preflight(origin));
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ error: { code: 'cors_origin_not_allowed' } });
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    }
    const customer = await createCustomer(t.db);
    const res = await corsApp().request(
      '/v1/wallet',
      bearer(await customerToken(customer.id), { origin: 'https://evil.example' }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('vary')).toContain('Origin');
  });

  it('sends no CORS headers at all when CORS_ORIGINS is unset (same-origin only)', async () => {
    const res = await t.app.request('/v1/checkouts', preflight(allowed));
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: 'cors_origin_not_allowed' } });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const customer = await createCustomer(t.db);
    const plain = await t.app.request(
      '/v1/wallet',
      bearer(await customerToken(customer.id), { origin: allowed }),
    );
    expect(plain.status).toBe(200);
    for (const [name] of plain.headers) expect(name).not.toMatch(/^access-control-/);
  });

  it('reads CORS_ORIGINS as a comma-separated list of origins and refuses anything else', () => {
    expect(
      loadConfig({ CORS_ORIGINS: 'https://a.example, http://localhost:5173' }).http.corsOrigins,
    ).toEqual(['https://a.example', 'http://localhost:5173']);
    expect(loadConfig({}).http.corsOrigins).toEqual([]);
    for (const bad of ['https://a.example/', 'a.example', 'https://a.example/app', '*']) {
      expect(() => loadConfig({ CORS_ORIGINS: bad }), bad).toThrow(/CORS_ORIGINS/);
    }
  });
});

describe('/metrics is not public', () => {
  const token = 'metrics-token-0123456789';

  it('stays open on the API port for local development and tests', async () => {
    const res = await t.app.request('/metrics');
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('creditflow_http_requests_total');
  });

  it('needs the bearer token when METRICS_TOKEN is set', async () => {
    const app = testApp(
      t.db,
      t.temporal,
      t.taskQueue,
      {},
      { security: { metrics: { mode: 'token', token } } },
    );
    for (const headers of [
      {} as Record<string, string>,
      { authorization: 'Bearer wrong-token-0123456789' },
      { authorization: `Bearer ${token}x` },
      { authorization: token },
    ]) {
      const res = await app.request('/metrics', { headers });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'metrics_unauthorized' } });
    }
    const res = await app.request('/metrics', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('creditflow_http_requests_total');
  });

  it('is not on the API port at all when it has a port of its own', async () => {
    const app = testApp(
      t.db,
      t.temporal,
      t.taskQueue,
      {},
      { security: { metrics: { mode: 'elsewhere' } } },
    );
    const res = await app.request('/metrics', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
  });

  it('serves only /metrics on its own port, behind the token when one is set', async () => {
    const metrics = createMetrics();
    metrics.httpRequests.inc({ method: 'GET', route: '/x', status: '200' });
    const open = metricsApp(metrics.registry);
    expect(await (await open.request('/metrics')).text()).toContain(
      'creditflow_http_requests_total',
    );
    expect((await open.request('/v1/wallet')).status).toBe(404);
    const guarded = metricsApp(metrics.registry, token);
    expect((await guarded.request('/metrics')).status).toBe(401);
    const ok = await guarded.request('/metrics', { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
  });

  it('decides the exposure from the configuration, and refuses an open one in production', () => {
    expect(metricsAccess(loadConfig({}))).toEqual({ mode: 'open' });
    expect(metricsAccess(loadConfig({ METRICS_PORT: '9100' }))).toEqual({ mode: 'elsewhere' });
    expect(metricsAccess(loadConfig({ METRICS_TOKEN: token }))).toEqual({ mode: 'token', token });
    expect(metricsAccess(loadConfig({ NODE_ENV: 'production', METRICS_TOKEN: token })).mode).toBe(
      'token',
    );
    expect(metricsAccess(loadConfig({ NODE_ENV: 'production', METRICS_PORT: '9100' })).mode).toBe(
      'elsewhere',
    );
    expect(() => metricsAccess(loadConfig({ NODE_ENV: 'production' }))).toThrow(
      /METRICS_PORT or METRICS_TOKEN/,
    );
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/);
  });
});
