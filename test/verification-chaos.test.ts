// The worker is SIGKILLed after the debit and before the outcome: a new worker finishes the
// purchase with one debit and at most one refund.
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import type { App } from '../src/api/app.js';
import { signSmsBody } from '../src/api/webhooks/sms.js';
import {
  SMS_SECRET,
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  spawnWorkerProcess,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let ledger: Ledger;
let temporal: Client;
let app: App;
let taskQueue: string;

beforeAll(async () => {
  db = testDatabase();
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
  taskQueue = uniqueId('verify-chaos');
  app = testApp(db, temporal, taskQueue);
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await temporal.connection.close();
  await db.close();
});

async function entryTypes(id: string) {
  const rows = await db.sql<{ type: string }[]>`
    select type from entries where workflow_id = ${`verification-${id}`} order by id`;
  return rows.map((r) => r.type);
}

async function statusOf(customerId: string, id: string) {
  const res = await app.request(`/v1/verifications/${id}`, {
    headers: { authorization: `Bearer ${await customerToken(customerId)}` },
  });
  return ((await res.json()) as { status: string; refundReason?: string }).status;
}

async function buyAndKill(timeoutSeconds: number) {
  const customer = await createCustomer(db);
  await fund(ledger, customer.id, 100);
  const worker = await spawnWorkerProcess(taskQueue);
  const res = await app.request(
    '/v1/verifications',
    jsonRequest(
      'POST',
      { service: 'whatsapp', country: 'US', timeoutSeconds },
      await customerToken(customer.id),
    ),
  );
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  await eventually(async () =>
    (await entryTypes(id)).includes('verification_purchase') ? true : undefined,
  );
  await worker.kill();
  return { customer, id };
}

describe('worker killed mid-purchase', () => {
  it('refunds exactly once when the timeout passes while no worker runs', async () => {
    const { customer, id } = await buyAndKill(2);
    expect(await ledger.walletBalance(customer.id)).toBe(50);
    await new Promise((r) => setTimeout(r, 2500));
    const worker = await spawnWorkerProcess(taskQueue);
    try {
      await eventually(
        async () => ((await statusOf(customer.id, id)) === 'refunded' ? true : undefined),
        {
          timeoutMs: 60_000,
        },
      );
      expect(await entryTypes(id)).toEqual(['verification_purchase', 'verification_refund']);
      expect(await ledger.walletBalance(customer.id)).toBe(100);
    } finally {
      await worker.stop();
    }
  });

  it('completes with one debit and no refund when the code arrives after the restart', async () => {
    const { customer, id } = await buyAndKill(120);
    const worker = await spawnWorkerProcess(taskQueue);
    try {
      await eventually(
        async () => ((await statusOf(customer.id, id)) === 'active' ? true : undefined),
        {
          timeoutMs: 60_000,
        },
      );
      const body = JSON.stringify({ verificationId: id, code: '909090' });
      const res = await app.request('/webhooks/sms', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-signature': signSmsBody(SMS_SECRET, body),
        },
        body,
      });
      expect(res.status).toBe(200);
      await eventually(async () =>
        (await statusOf(customer.id, id)) === 'completed' ? true : undefined,
      );
      expect(await entryTypes(id)).toEqual(['verification_purchase']);
      expect(await ledger.walletBalance(customer.id)).toBe(50);
    } finally {
      await worker.stop();
    }
  });
});
