// While Temporal does not answer, every POST that starts a workflow answers 503 with Retry-After
// within its short start deadline, and nothing was written; the same request succeeds once it is back.
import { Client, Connection } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/api/app.js';
import { createLedger } from '../src/ledger/ledger.js';
import type { Database } from '../src/db/client.js';
import { freePort } from '../src/stack/ports.js';
import {
  adminToken,
  createCustomer,
  customerToken,
  fund,
  jsonRequest,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let down: Client;
let app: App;

beforeAll(async () => {
  db = testDatabase(2);
  // Nothing listens on this port: every call fails the way it does while the server is down.
  const connection = Connection.lazy({ address: `127.0.0.1:${await freePort()}` });
  down = new Client({ connection, namespace: 'default' });
  app = testApp(db, down, uniqueId('temporal-down'), { temporalStartTimeoutMs: 300 });
});

afterAll(async () => {
  await down.connection.close();
  await db.close();
});

async function expectUnavailable(res: Response) {
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('5');
  expect(await res.json()).toMatchObject({
    error: {
      code: 'temporal_unavailable',
      message: expect.stringContaining('Retry after') as string,
    },
  });
}

/** What the flows write about a customer: read models, payments, grants, ledger entries. */
async function rowsOf(customerId: string) {
  const [row] = await db.sql<Record<string, string>[]>`
    select (select count(*) from adjustments where customer_id = ${customerId}) as adjustments,
           (select count(*) from verifications where customer_id = ${customerId}) as verifications,
           (select count(*) from orders where buyer_id = ${customerId}) as orders,
           (select count(*) from payments where customer_id = ${customerId}) as payments,
           (select count(*) from grants where customer_id = ${customerId}) as grants`;
  return row;
}

describe('POST routes while Temporal is down', () => {
  it('answers 503 with Retry-After for every route that starts a workflow, writing nothing', async () => {
    const customer = await createCustomer(db);
    await fund(createLedger(db.sql), customer.id, 50);
    const admin = await adminToken();
    const own = await customerToken(customer.id);
    const before = await rowsOf(customer.id);
    const post = (path: string, body: unknown, token: string) =>
      app.request(path, jsonRequest('POST', body, token, { 'idempotency-key': uniqueId('key') }));

    await expectUnavailable(
      await post(
        '/v1/admin/adjustments',
        { customerId: customer.id, amount: 5, reason: 'goodwill' },
        admin,
      ),
    );
    await expectUnavailable(
      await post(
        '/v1/admin/grants',
        { customerId: customer.id, credits: 5, category: 'promotional', reason: 'goodwill' },
        admin,
      ),
    );
    await expectUnavailable(
      await post(
        '/v1/admin/reconciliations',
        { from: '2026-11-20T00:00:00Z', to: '2026-11-21T00:00:00Z' },
        admin,
      ),
    );
    await expectUnavailable(
      await post('/v1/verifications', { service: 'whatsapp', country: 'US' }, own),
    );
    await expectUnavailable(await post('/v1/orders', { itemIds: [randomUUID()] }, own));
    await expectUnavailable(await post('/v1/checkouts', { pack: 'small' }, own));

    // Nothing half-written: the balance, the ledger and the read models are as they were.
    expect(await createLedger(db.sql).walletBalance(customer.id)).toBe(50);
    expect(await rowsOf(customer.id)).toEqual(before);
  });
});
