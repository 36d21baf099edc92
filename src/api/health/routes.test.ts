// Operations endpoints: liveness, readiness against the real services, metrics, API docs.
import { Client, Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  connectTestClient,
  eventually,
  scratchDatabase,
  testApp,
  testDatabase,
  uniqueId,
} from '../../../test/helpers.js';
import { shippedMigrations } from '../../readiness/checks.js';
import { freePort } from '../../stack/ports.js';
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
      checks: {
        database: 'ok',
        temporal: 'ok',
        namespace: 'ok',
        searchAttributes: 'ok',
        migrations: 'ok',
      },
    });
  });

  it('answers 503 from /readyz naming the database when it is unreachable', async () => {
    const broken = createDatabase('postgres://nobody@127.0.0.1:1/none', { max: 1 });
    const brokenApp = testApp(broken, temporal, uniqueId('health'));
    const res = await brokenApp.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      checks: { database: 'unreachable', temporal: 'ok', migrations: 'unknown' },
    });
    await broken.close();
  });

  it('answers 503 naming Temporal when it does not answer', async () => {
    const connection = Connection.lazy({ address: `127.0.0.1:${await freePort()}` });
    const down = new Client({ connection, namespace: 'default' });
    const res = await testApp(db, down, uniqueId('health')).request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      checks: { database: 'ok', temporal: 'unreachable', namespace: 'unknown' },
    });
    await connection.close();
  });
});

describe('readiness of the setup', () => {
  const address = () => inject('temporalAddress');

  it('answers 503 naming a namespace that does not exist, with the command that creates it', async () => {
    const namespace = uniqueId('missing-ns');
    const elsewhere = new Client({ connection: temporal.connection, namespace });
    const res = await testApp(db, elsewhere, uniqueId('health')).request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      status: 'not_ready',
      checks: {
        temporal: 'ok',
        namespace: 'missing',
        searchAttributes: 'unknown',
        migrations: 'ok',
      },
      problems: [
        {
          check: 'namespace',
          fix: `temporal operator namespace create -n ${namespace} --address ${address()}`,
        },
      ],
    });
  });

  it('answers 503 naming each missing search attribute, and 200 once they are created', async () => {
    const namespace = uniqueId('bare-ns');
    await temporal.workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs('1 day'),
    });
    const bare = new Client({ connection: temporal.connection, namespace });
    const app = testApp(db, bare, uniqueId('health'));
    // A new namespace reaches every frontend after a moment.
    const body = await eventually(async () => {
      const res = await app.request('/readyz');
      const json = (await res.json()) as { checks: { namespace: string } };
      return res.status === 503 && json.checks.namespace === 'ok' ? json : undefined;
    });
    expect(body).toMatchObject({
      checks: { namespace: 'ok', searchAttributes: 'missing' },
      problems: ['CustomerId', 'FlowStatus'].map((name) => ({
        check: 'search_attributes',
        fix: `temporal operator search-attribute create --name ${name} --type Keyword --namespace ${namespace} --address ${address()}`,
      })),
    });

    // What the fix commands do: the namespace is then ready.
    await temporal.connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: { CustomerId: 2, FlowStatus: 2 },
    });
    const ready = await eventually(async () => {
      const res = await app.request('/readyz');
      return res.status === 200 ? res : undefined;
    });
    expect(await ready.json()).toMatchObject({ status: 'ready' });
  });

  it('reuses a passing namespace and search-attribute check, and checks again after a failure', async () => {
    // Counts the setup calls the probe makes through an otherwise real connection.
    const calls = { describeNamespace: 0 };
    const workflowService = new Proxy(temporal.connection.workflowService, {
      get(target, name, receiver) {
        if (name === 'describeNamespace') calls.describeNamespace++;
        return Reflect.get(target, name, receiver) as unknown;
      },
    });
    const connection = new Proxy(temporal.connection, {
      get: (target, name, receiver) =>
        name === 'workflowService'
          ? workflowService
          : (Reflect.get(target, name, receiver) as unknown),
    });
    const counted = new Client({ connection, namespace: temporal.options.namespace });
    const app = testApp(db, counted, uniqueId('health'));
    for (let i = 0; i < 3; i++) expect((await app.request('/readyz')).status).toBe(200);
    expect(calls.describeNamespace).toBe(1);

    const missing = new Client({ connection, namespace: uniqueId('missing-ns') });
    const failing = testApp(db, missing, uniqueId('health'));
    for (let i = 0; i < 2; i++) expect((await failing.request('/readyz')).status).toBe(503);
    expect(calls.describeNamespace).toBe(3);
  });

  it('answers 503 for a database without migrations, and one a migration behind', async () => {
    const scratch = await scratchDatabase('unmigrated', { migrate: false });
    try {
      const res = await testApp(scratch.db, temporal, uniqueId('health')).request('/readyz');
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({
        checks: { database: 'ok', temporal: 'ok', migrations: 'missing' },
        problems: [
          {
            check: 'migrations',
            message: expect.stringContaining('(next: 0000_init)') as string,
            fix: expect.stringContaining('npm run db:migrate') as string,
          },
        ],
      });
    } finally {
      await scratch.drop();
    }
  });

  it('answers 503 for a database one migration behind this build', async () => {
    const scratch = await scratchDatabase('behind');
    try {
      const app = testApp(scratch.db, temporal, uniqueId('health'));
      expect((await app.request('/readyz')).status).toBe(200);
      const newest = shippedMigrations().at(-1)!;
      await scratch.db.sql`
        delete from drizzle.__drizzle_migrations where created_at = ${newest.when}`;
      const res = await app.request('/readyz');
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({
        checks: { migrations: 'missing' },
        problems: [{ message: expect.stringContaining(`1 of this build's`) as string }],
      });
    } finally {
      await scratch.drop();
    }
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
