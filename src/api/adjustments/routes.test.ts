// Adjustments end to end: HTTP API → Temporal → worker → ledger, with a real worker on its own queue.
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
} from '../../../test/helpers.js';
import type { Database } from '../../db/client.js';
import { createLedger, type Ledger } from '../../ledger/ledger.js';
import { searchAttributes, workflowIds, type AdjustmentState } from '../../shared.js';
import type { App } from '../app.js';
import { adjustmentIdFor } from './routes.js';

let db: Database;
let temporal: Client;
let app: App;
let ledger: Ledger;
let admin: string;
let worker: Awaited<ReturnType<typeof startTestWorker>>;

beforeAll(async () => {
  const taskQueue = uniqueId('adjustments');
  db = testDatabase();
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
  worker = await startTestWorker(db, taskQueue);
  app = testApp(db, temporal, taskQueue);
  admin = await adminToken();
});

afterAll(async () => {
  await worker?.stop();
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

interface Started {
  id: string;
  workflowId: string;
  status: string;
}

async function postAdjustment(body: unknown, key: string | null = uniqueId('key'), token = admin) {
  return app.request(
    '/v1/admin/adjustments',
    jsonRequest('POST', body, token, key === null ? {} : { 'idempotency-key': key }),
  );
}

async function waitForOutcome(id: string): Promise<AdjustmentState> {
  return eventually(async () => {
    const res = await app.request(`/v1/admin/adjustments/${id}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    const state = (await res.json()) as AdjustmentState;
    return state.status === 'pending' ? undefined : state;
  });
}

async function entriesFor(workflowId: string) {
  return db.sql<
    { id: string; type: string }[]
  >`select id, type from entries where workflow_id = ${workflowId}`;
}

describe('POST /v1/admin/adjustments', () => {
  it('credits a wallet through the workflow, with history, audit and search attributes', async () => {
    const customer = await createCustomer(db);
    const res = await postAdjustment({
      customerId: customer.id,
      amount: 750,
      reason: 'welcome bonus',
    });
    expect(res.status).toBe(202);
    const started = (await res.json()) as Started;
    expect(started.workflowId).toBe(`adjustment-${started.id}`);

    const state = await waitForOutcome(started.id);
    expect(state).toMatchObject({
      status: 'completed',
      amount: 750,
      balanceAfter: 750,
      customerId: customer.id,
      requestedBy: 'admin-tests',
    });
    expect(await ledger.walletBalance(customer.id)).toBe(750);

    const history = await app.request('/v1/wallet/transactions', {
      headers: { authorization: `Bearer ${await customerToken(customer.id)}` },
    });
    const page = (await history.json()) as { items: Array<Record<string, unknown>> };
    expect(page.items).toEqual([
      expect.objectContaining({
        type: 'adjustment',
        amount: 750,
        balanceAfter: 750,
        description: 'Adjustment: welcome bonus',
      }),
    ]);

    const audit =
      await db.sql`select actor, action, reason from audit_log where target_id = ${customer.id}`;
    expect(audit).toEqual([
      { actor: 'admin-tests', action: 'credit_adjustment', reason: 'welcome bonus' },
    ]);

    const description = await temporal.workflow.getHandle(started.workflowId).describe();
    expect(description.typedSearchAttributes.get(searchAttributes.customerId)).toBe(customer.id);
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('completed');
  });

  it('returns the same workflow for a retried POST with the same Idempotency-Key and posts once', async () => {
    const customer = await createCustomer(db);
    const key = uniqueId('retry');
    const body = { customerId: customer.id, amount: 300, reason: 'goodwill' };
    const first = (await (await postAdjustment(body, key)).json()) as Started;
    // Concurrent retries while it runs, and one more after it has finished.
    const concurrent = await Promise.all(
      Array.from({ length: 5 }, () => postAdjustment(body, key)),
    );
    for (const res of concurrent) {
      expect(res.status).toBe(202);
      expect(((await res.json()) as Started).workflowId).toBe(first.workflowId);
    }
    await waitForOutcome(first.id);
    const late = await postAdjustment(body, key);
    expect(late.status).toBe(202);
    expect(await late.json()).toEqual({
      id: first.id,
      workflowId: first.workflowId,
      status: 'completed',
    });

    expect(await entriesFor(first.workflowId)).toHaveLength(1);
    expect(await ledger.walletBalance(customer.id)).toBe(300);
  });

  it('answers 409 when an Idempotency-Key is reused for a different adjustment', async () => {
    const customer = await createCustomer(db);
    const key = uniqueId('reuse');
    const first = (await (
      await postAdjustment({ customerId: customer.id, amount: 10, reason: 'first' }, key)
    ).json()) as Started;
    const res = await postAdjustment({ customerId: customer.id, amount: 20, reason: 'first' }, key);
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: 'idempotency_conflict' } });
    await waitForOutcome(first.id);
    expect(await ledger.walletBalance(customer.id)).toBe(10);
  });

  it('debits with a negative amount, and refuses a debit the wallet does not cover', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const debit = (await (
      await postAdjustment({ customerId: customer.id, amount: -40, reason: 'correction' })
    ).json()) as Started;
    expect(await waitForOutcome(debit.id)).toMatchObject({ status: 'completed', balanceAfter: 60 });

    const tooMuch = (await (
      await postAdjustment({ customerId: customer.id, amount: -61, reason: 'too much' })
    ).json()) as Started;
    const refused = await waitForOutcome(tooMuch.id);
    expect(refused.status).toBe('rejected');
    expect(refused.error?.code).toBe('insufficient_credits');
    expect(await ledger.walletBalance(customer.id)).toBe(60);
    expect(await entriesFor(tooMuch.workflowId)).toHaveLength(0);
    const description = await temporal.workflow.getHandle(tooMuch.workflowId).describe();
    expect(description.status.name).toBe('FAILED');
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('rejected');
  });

  const validCustomer = '11111111-1111-4111-8111-111111111111';
  it.each([
    ['malformed JSON', '{"amount": 5,'],
    ['a JSON array', [1, 2]],
    ['a missing customerId', { amount: 5, reason: 'ok ok' }],
    ['a placeholder customerId', { customerId: '<customer-id>', amount: 5, reason: 'ok ok' }],
    ['an amount as a string', { customerId: validCustomer, amount: '5', reason: 'ok ok' }],
    ['a zero amount', { customerId: validCustomer, amount: 0, reason: 'ok ok' }],
    ['a fractional amount', { customerId: validCustomer, amount: 1.5, reason: 'ok ok' }],
    ['an amount beyond the bound', { customerId: validCustomer, amount: 1e15, reason: 'ok ok' }],
    ['a missing reason', { customerId: validCustomer, amount: 5 }],
  ])('answers 400 for %s and starts nothing', async (_label, body) => {
    const key = uniqueId('bad');
    const res = await postAdjustment(body, key);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toMatch(/^(invalid_request|malformed_json)$/);
    await expect(
      temporal.workflow.getHandle(workflowIds.adjustment(adjustmentIdFor(key))).describe(),
    ).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });

  it('credits a grant of the category asked (paid by default), and refuses an unknown one', async () => {
    const customer = await createCustomer(db);
    const grantOf = async (body: Record<string, unknown>, key = uniqueId('key')) => {
      const res = await postAdjustment({ customerId: customer.id, reason: 'grant', ...body }, key);
      expect(res.status, await res.clone().text()).toBe(202);
      const state = await waitForOutcome(((await res.json()) as Started).id);
      expect(state.status).toBe('completed');
      const [row] = await db.sql<{ category: string; source: string; credits: string }[]>`
        select category, source, credits from grants where entry_id = ${state.entryId}`;
      return { state, grant: row };
    };
    const promo = await grantOf({ amount: 30, category: 'promotional' });
    expect(promo.grant).toEqual({ category: 'promotional', source: 'adjustment', credits: '30' });
    expect(promo.state.category).toBe('promotional');
    const paid = await grantOf({ amount: 20 });
    expect(paid.grant).toEqual({ category: 'paid', source: 'adjustment', credits: '20' });

    // The promotional credits are spent first.
    const debit = await grantOf({ amount: -25 });
    expect(debit.grant).toBeUndefined();
    const [left] = await db.sql<{ promo: string; paid: string }[]>`
      select sum(remaining) filter (where category = 'promotional') as promo,
             sum(remaining) filter (where category = 'paid') as paid
      from grants where customer_id = ${customer.id}`;
    expect(left).toEqual({ promo: '5', paid: '20' });

    const bad = await postAdjustment({
      customerId: customer.id,
      amount: 10,
      reason: 'grant',
      category: 'gift',
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('category');

    // The same key with another category is another adjustment.
    const key = uniqueId('key');
    await grantOf({ amount: 10, category: 'promotional' }, key);
    const other = await postAdjustment(
      { customerId: customer.id, amount: 10, reason: 'grant' },
      key,
    );
    expect(other.status).toBe(409);
  });

  it('answers 400 without an Idempotency-Key, 404 for an unknown customer, 403 for customers', async () => {
    const customer = await createCustomer(db);
    const body = { customerId: customer.id, amount: 5, reason: 'no key' };
    const noKey = await postAdjustment(body, null);
    expect(noKey.status).toBe(400);
    expect(((await noKey.json()) as { error: { message: string } }).error.message).toMatch(
      /Idempotency-Key/,
    );

    const unknown = await postAdjustment({ ...body, customerId: randomUUID() });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'customer_not_found' } });

    const asCustomer = await postAdjustment(body, uniqueId('k'), await customerToken(customer.id));
    expect(asCustomer.status).toBe(403);
    expect(await ledger.walletBalance(customer.id)).toBe(0);
  });
});

describe('GET /v1/admin/adjustments/:id', () => {
  it('answers 404 for an unknown adjustment', async () => {
    const res = await app.request('/v1/admin/adjustments/adj_unknown', {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(res.status).toBe(404);
  });
});
