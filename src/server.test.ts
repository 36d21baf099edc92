// The API process as an operator starts it: where /metrics is served (its own loopback port, a
// token, or open only outside production), which settings it refuses, and headers over a socket.
import { createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { JWT_SECRET, uniqueId } from '../test/helpers.js';
import { ConfigError, loadConfig } from './config.js';
import { startApi, type RunningApi } from './server.js';
import { freePort } from './stack/ports.js';

const METRICS_TOKEN = 'metrics-token-for-tests-0123';

async function apiConfig(env: Record<string, string> = {}) {
  return loadConfig({
    DATABASE_URL: inject('databaseUrl'),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: inject('temporalNamespace'),
    TEMPORAL_TASK_QUEUE: uniqueId('server'),
    AUTH_JWT_SECRET: JWT_SECRET,
    LOG_LEVEL: 'silent',
    PORT: String(await freePort()),
    ...env,
  });
}

/** Starts the API, runs `check` against it, and always stops it. */
async function withApi(env: Record<string, string>, check: (api: RunningApi) => Promise<void>) {
  const api = await startApi(await apiConfig(env));
  try {
    await check(api);
  } finally {
    await api.stop();
  }
}

describe('where the API serves /metrics', () => {
  it('on METRICS_PORT only, on loopback, behind METRICS_TOKEN when set', async () => {
    const metricsPort = await freePort();
    await withApi(
      { METRICS_PORT: String(metricsPort), METRICS_TOKEN, NODE_ENV: 'production' },
      async (api) => {
        expect(api.metricsUrl).toBe(`http://127.0.0.1:${metricsPort}/metrics`);
        const onApi = await fetch(`${api.url}/metrics`, {
          headers: { authorization: `Bearer ${METRICS_TOKEN}` },
        });
        expect(onApi.status).toBe(404);
        expect((await fetch(api.metricsUrl!)).status).toBe(401);
        const res = await fetch(api.metricsUrl!, {
          headers: { authorization: `Bearer ${METRICS_TOKEN}` },
        });
        expect(res.status).toBe(200);
        expect(await res.text()).toContain('creditflow_http_requests_total');
      },
    );
  });

  it('on the API port behind METRICS_TOKEN', async () => {
    await withApi({ METRICS_TOKEN, NODE_ENV: 'production' }, async (api) => {
      expect(api.metricsUrl).toBeUndefined();
      const refused = await fetch(`${api.url}/metrics`);
      expect(refused.status).toBe(401);
      expect(await refused.json()).toMatchObject({ error: { code: 'metrics_unauthorized' } });
      const res = await fetch(`${api.url}/metrics`, {
        headers: { authorization: `Bearer ${METRICS_TOKEN}` },
      });
      expect(res.status).toBe(200);
    });
  });

  it('open on the API port in development, as before', async () => {
    await withApi({}, async (api) => {
      expect((await fetch(`${api.url}/metrics`)).status).toBe(200);
    });
  });

  it('refuses to start in production with /metrics public', async () => {
    const config = await apiConfig({ NODE_ENV: 'production' });
    await expect(startApi(config)).rejects.toThrow(/METRICS_PORT or METRICS_TOKEN/);
  });

  it('names METRICS_PORT when it is taken or the API port', async () => {
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const taken = startApi(await apiConfig({ METRICS_PORT: String(port) }));
      await expect(taken).rejects.toBeInstanceOf(ConfigError);
      await expect(taken).rejects.toThrow(/METRICS_PORT: \d+ is already in use/);
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
    }
    const same = await freePort();
    await expect(
      startApi(await apiConfig({ PORT: String(same), METRICS_PORT: String(same) })),
    ).rejects.toThrow(/METRICS_PORT: must differ from PORT/);
  });
});

describe('API settings', () => {
  it('needs AUTH_JWT_SECRET unless AUTH_JWKS_URL names an identity provider', async () => {
    const config = await apiConfig();
    await expect(
      startApi({ ...config, auth: { ...config.auth, jwtSecret: undefined } }),
    ).rejects.toThrow(/AUTH_JWT_SECRET: required/);
    const jwksOnly = await apiConfig({ AUTH_JWKS_URL: 'http://127.0.0.1:1/jwks.json' });
    const api = await startApi({ ...jwksOnly, auth: { ...jwksOnly.auth, jwtSecret: undefined } });
    try {
      expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
      const res = await fetch(`${api.url}/v1/wallet`, {
        headers: { authorization: 'Bearer not.a.token' },
      });
      expect(res.status).toBe(401);
    } finally {
      await api.stop();
    }
  });

  it('sends HSTS over a real socket only when a trusted proxy says the client used TLS', async () => {
    const forwarded = { headers: { 'x-forwarded-proto': 'https' } };
    await withApi({}, async (api) => {
      const res = await fetch(`${api.url}/healthz`, forwarded);
      expect(res.headers.get('strict-transport-security')).toBeNull();
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    });
    await withApi({ TRUST_PROXY: 'true' }, async (api) => {
      const res = await fetch(`${api.url}/healthz`, forwarded);
      expect(res.headers.get('strict-transport-security')).toMatch(/^max-age=/);
    });
  });
});
