// Operations endpoints: liveness, readiness against the real services, metrics, API docs.
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectTestClient, testApp, testDatabase, uniqueId } from '../../../test/helpers.js';
import { createDatabase, type Database } from '../../db/client.js';
import type { App } from '../app.js';

let db: Database;
let temporal: Client;
let app: App;

beforeAll(async () => {
  db = testDatabase(2);
  temporal = await connectTestClient();
  app = testApp(db, temporal, uniqueId('health'));
});

afterAll(async () => {
  await temporal.connection.close();
  await db.close();
});

describe('operations endpoints', () => {
  it('answers /healthz and /readyz when PostgreSQL and Temporal are reachable', async () => {
    expect(await (await app.request('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await app.request('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      checks: { database: 'ok', temporal: 'ok' },
    });
  });

  it('answers 503 from /readyz naming the database when it is unreachable', async () => {
    const broken = createDatabase('postgres://nobody@127.0.0.1:1/none', { max: 1 });
    const brokenApp = testApp(broken, temporal, uniqueId('health'));
    const res = await brokenApp.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ checks: { database: 'unreachable', temporal: 'ok' } });
    await broken.close();
  });

  it('publishes the OpenAPI document, the docs page and Prometheus metrics', async () => {
    const doc = (await (await app.request('/openapi.json')).json()) as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/customers',
        '/v1/wallet',
        '/v1/wallet/transactions',
        '/v1/admin/adjustments',
      ]),
    );
    expect((await app.request('/docs')).status).toBe(200);
    const metrics = await (await app.request('/metrics')).text();
    expect(metrics).toContain('creditflow_http_requests_total');
  });

  it('answers unknown routes with the error format', async () => {
    const res = await app.request('/nope');
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
  });
});
