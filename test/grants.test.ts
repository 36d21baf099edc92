// Admin grants end to end: HTTP API → grant workflow → ledger, with a real worker on its own
// queue; future-dated grants, voids, and the wallet views that show grants.
import { WorkflowNotFoundError } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantIdFor } from '../src/api/grants/routes.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import { grantStateQuery, searchAttributes, workflowIds } from '../src/shared.js';
import {
  adminToken,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  jsonRequest,
  startTestWorker,
  uniqueId,
  useTestApp,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';

const bench = useTestApp('grants', {}, { checkLedger: true });
let ledger: Ledger;
let admin: string;
let worker: Awaited<ReturnType<typeof startTestWorker>>;

beforeAll(async () => {
  ledger = createLedger(bench.db.sql);
  admin = await adminToken();
  worker = await startTestWorker(bench.db, bench.taskQueue, {
    temporal: bench.temporal,
    taskQueue: bench.taskQueue,
  });
});

afterAll(async () => {
  await worker?.stop();
});

interface GrantView {
  id: string;
  workflowId: string;
  customerId: string;
  status: string;
  credits: number;
  remaining: number | null;
  category: string;
  source: string;
  priority: number;
  effectiveAt: string | null;
  expiresAt: string | null;
  reason: string | null;
  entryId: number | null;
  closedAt: string | null;
  error: { code: string } | null;
  history?: Array<{ kind: string; amount: number; entryType: string | null }>;
}

interface WalletView {
  balance: number;
  available: number;
  byCategory: { paid: number; promotional: number };
  grants: Array<{
    id: string;
    category: string;
    source: string;
    remaining: number;
    priority: number;
    effectiveAt: string;
    expiresAt: string | null;
    spendable: boolean;
  }>;
}

const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

async function postGrant(body: unknown, key: string | null = uniqueId('grant-key')) {
  return bench.app.request(
    '/v1/admin/grants',
    jsonRequest('POST', body, admin, key === null ? {} : { 'idempotency-key': key }),
  );
}

async function getGrant(id: string): Promise<GrantView> {
  const res = await bench.app.request(`/v1/admin/grants/${id}`, auth(admin));
  expect(res.status).toBe(200);
  return (await res.json()) as GrantView;
}

function waitForGrant(id: string, status: string): Promise<GrantView> {
  return eventually(async () => {
    const grant = await getGrant(id);
    return grant.status === status ? grant : undefined;
  });
}

async function wallet(customerId: string): Promise<WalletView> {
  const res = await bench.app.request('/v1/wallet', auth(await customerToken(customerId)));
  expect(res.status).toBe(200);
  return (await res.json()) as WalletView;
}

/** A purchase-like debit straight through the ledger. */
function spend(customerId: string, amount: number, key = uniqueId('spend')) {
  return ledger.postEntry({
    idempotencyKey: key,
    type: 'purchase',
    description: 'test purchase',
    lines: [
      { account: { wallet: customerId }, amount: -amount },
      { account: { system: 'revenue' }, amount },
    ],
  });
}

async function grantRows(customerId: string) {
  return bench.db.sql`select id from grants where customer_id = ${customerId}`;
}

describe('POST /v1/admin/grants', () => {
  it('posts a promotional grant through its workflow, with the entry, audit and search attributes', async () => {
    const customer = await createCustomer(bench.db);
    const key = uniqueId('promo');
    const res = await postGrant(
      { customerId: customer.id, credits: 120, category: 'promotional', reason: 'welcome promo' },
      key,
    );
    expect(res.status).toBe(202);
    const started = (await res.json()) as GrantView;
    expect(started.id).toBe(grantIdFor(key));
    expect(started.workflowId).toBe(`grant-${started.id}`);
    expect(res.headers.get('location')).toBe(`/v1/admin/grants/${started.id}`);

    const grant = await waitForGrant(started.id, 'open');
    expect(grant).toMatchObject({
      customerId: customer.id,
      credits: 120,
      remaining: 120,
      category: 'promotional',
      source: 'promotion',
      priority: 100,
      expiresAt: null,
      reason: 'welcome promo',
      closedAt: null,
    });
    expect(grant.history).toEqual([
      expect.objectContaining({ kind: 'grant', amount: 120, entryType: 'grant' }),
    ]);
    const entries = await bench.db.sql<{ idempotency_key: string; type: string }[]>`
      select idempotency_key, type from entries where workflow_id = ${started.workflowId}`;
    expect(entries).toEqual([{ idempotency_key: `grant:${started.id}`, type: 'grant' }]);
    expect(await ledger.walletBalance(customer.id)).toBe(120);
    const audit = await bench.db.sql`
      select actor, action, reason from audit_log where target_id = ${customer.id}`;
    expect(audit).toEqual([
      { actor: 'admin-tests', action: 'credit_grant', reason: 'welcome promo' },
    ]);
    // Without an expiry the run ends once the grant is posted.
    expect(await bench.temporal.workflow.getHandle(started.workflowId).result()).toMatchObject({
      status: 'open',
    });
    // Read once the run has ended: the grant row commits before the run marks its status.
    const description = await bench.temporal.workflow.getHandle(started.workflowId).describe();
    expect(description.typedSearchAttributes.get(searchAttributes.customerId)).toBe(customer.id);
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('open');
    await keepHistory(bench.temporal, 'grant-posted', started.workflowId);
  });

  it('answers the same grant for the same key and body, 409 for another body, 400 without a key', async () => {
    const customer = await createCustomer(bench.db);
    const key = uniqueId('replay');
    const body = { customerId: customer.id, credits: 30, category: 'paid', reason: 'goodwill' };
    const first = (await (await postGrant(body, key)).json()) as GrantView;
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => postGrant(body, key)));
    for (const res of concurrent) {
      expect(res.status).toBe(202);
      expect(((await res.json()) as GrantView).id).toBe(first.id);
    }
    await waitForGrant(first.id, 'open');
    const late = await postGrant({ ...body, priority: 100 }, key);
    expect(late.status).toBe(202);
    expect(await late.json()).toMatchObject({ id: first.id, status: 'open', remaining: 30 });

    const other = await postGrant({ ...body, credits: 31 }, key);
    expect(other.status).toBe(409);
    expect(await other.json()).toMatchObject({ error: { code: 'idempotency_conflict' } });

    const missing = await postGrant(body, null);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: { code: 'invalid_request' } });

    expect(await grantRows(customer.id)).toHaveLength(1);
    expect(await ledger.walletBalance(customer.id)).toBe(30);
  });

  it('refuses bad amounts, priorities, dates and unknown customers with nothing written', async () => {
    const customer = await createCustomer(bench.db);
    const base = { customerId: customer.id, credits: 10, category: 'paid', reason: 'goodwill' };
    const past = new Date(Date.now() - 60_000).toISOString();
    const soon = new Date(Date.now() + 3_600_000).toISOString();
    const later = new Date(Date.now() + 7_200_000).toISOString();
    const cases: Array<[unknown, number, string]> = [
      [{ ...base, credits: 0 }, 400, 'invalid_request'],
      [{ ...base, credits: -5 }, 400, 'invalid_request'],
      [{ ...base, credits: 1.5 }, 400, 'invalid_request'],
      [{ ...base, credits: 1_000_000_001 }, 400, 'invalid_request'],
      [{ ...base, priority: 1001 }, 400, 'invalid_request'],
      [{ ...base, priority: -1 }, 400, 'invalid_request'],
      [{ ...base, category: 'gift' }, 400, 'invalid_request'],
      [{ ...base, reason: '' }, 400, 'invalid_request'],
      [{ ...base, expiresAt: 'tomorrow' }, 400, 'invalid_request'],
      [{ ...base, surprise: true }, 400, 'invalid_request'],
      [{ ...base, expiresAt: past }, 400, 'invalid_grant'],
      [{ ...base, effectiveAt: later, expiresAt: soon }, 400, 'invalid_grant'],
      [{ ...base, customerId: randomUUID() }, 404, 'customer_not_found'],
    ];
    for (const [body, status, code] of cases) {
      const key = uniqueId('invalid');
      const res = await postGrant(body, key);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(await res.json()).toMatchObject({ error: { code } });
      await expect(
        bench.temporal.workflow.getHandle(workflowIds.grant(grantIdFor(key))).describe(),
      ).rejects.toBeInstanceOf(WorkflowNotFoundError);
    }
    expect(await grantRows(customer.id)).toHaveLength(0);
    expect(await ledger.walletBalance(customer.id)).toBe(0);
  });

  it('a future-dated grant is held but not spendable until its effectiveAt', async () => {
    const customer = await createCustomer(bench.db);
    const effectiveAt = new Date(Date.now() + 2_000).toISOString();
    const res = await postGrant({
      customerId: customer.id,
      credits: 50,
      category: 'promotional',
      effectiveAt,
      reason: 'starts soon',
    });
    const { id } = (await res.json()) as GrantView;
    const grant = await waitForGrant(id, 'open');
    expect(grant.effectiveAt).toBe(effectiveAt);

    // Before effectiveAt (checked against the database clock, not asserted by timing).
    const [early] = await bench.db.sql<{ effective: boolean }[]>`
      select effective_at <= now() as effective from grants where id = ${id}`;
    if (!early!.effective) {
      const view = await wallet(customer.id);
      expect(view).toMatchObject({ balance: 50, byCategory: { paid: 0 } });
      expect(view.grants).toEqual([expect.objectContaining({ id, remaining: 50 })]);
      const refused = await spend(customer.id, 10).catch((err: unknown) => err);
      const [still] = await bench.db.sql<{ effective: boolean }[]>`
        select effective_at <= now() as effective from grants where id = ${id}`;
      if (!still!.effective) {
        expect(refused).toMatchObject({ code: 'insufficient_credits' });
      }
    }

    const spendable = await eventually(async () => {
      const view = await wallet(customer.id);
      return view.available === 50 ? view : undefined;
    });
    expect(spendable.byCategory).toEqual({ paid: 0, promotional: 50 });
    expect(spendable.grants).toEqual([expect.objectContaining({ id, spendable: true })]);
    await spend(customer.id, 20);
    expect((await wallet(customer.id)).available).toBe(30);
    await expectLedgerConsistent(bench.db);
  });
});

describe('POST /v1/admin/grants/{id}/void', () => {
  it('removes what is left of a grant that never expires, once, audited', async () => {
    const customer = await createCustomer(bench.db);
    const res = await postGrant({
      customerId: customer.id,
      credits: 80,
      category: 'promotional',
      reason: 'campaign',
    });
    const { id, workflowId } = (await res.json()) as GrantView;
    await waitForGrant(id, 'open');
    // Without an expiry its run ends once the grant is posted; the void starts a fresh one.
    await eventually(async () => {
      const d = await bench.temporal.workflow.getHandle(workflowId).describe();
      return d.status.name === 'COMPLETED' ? true : undefined;
    });
    await spend(customer.id, 30);

    const voided = await bench.app.request(
      `/v1/admin/grants/${id}/void`,
      jsonRequest('POST', { reason: 'campaign withdrawn' }, admin),
    );
    expect(voided.status).toBe(202);
    const after = await waitForGrant(id, 'voided');
    expect(after).toMatchObject({ remaining: 0, credits: 80 });
    expect(after.history?.map((h) => [h.kind, h.amount])).toEqual([
      ['grant', 80],
      ['draw', -30],
      ['void', -50],
    ]);

    const again = await bench.app.request(
      `/v1/admin/grants/${id}/void`,
      jsonRequest('POST', { reason: 'campaign withdrawn' }, admin),
    );
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ id, status: 'voided', remaining: 0 });

    const entries = await bench.db.sql<{ type: string }[]>`
      select type from entries where idempotency_key = ${`grant-void:${id}`}`;
    expect(entries).toEqual([{ type: 'grant_void' }]);
    expect(await ledger.walletBalance(customer.id)).toBe(0);
    const audit = await bench.db.sql<{ action: string; details: { credits: number } }[]>`
      select action, details from audit_log where target_id = ${customer.id} and action = 'grant_void'`;
    expect(audit).toEqual([
      { action: 'grant_void', details: expect.objectContaining({ credits: 50 }) },
    ]);
    const run = await bench.temporal.workflow.getHandle(workflowId).result();
    expect(run).toMatchObject({ status: 'voided', closedCredits: 50 });
  });

  it('a void reaches the run waiting for the expiry timer; unknown grants are 404', async () => {
    const customer = await createCustomer(bench.db);
    const res = await postGrant({
      customerId: customer.id,
      credits: 15,
      category: 'paid',
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      reason: 'expires in an hour',
    });
    const { id, workflowId, expiresAt } = (await res.json()) as GrantView;
    await waitForGrant(id, 'open');
    const waiting = await bench.temporal.workflow.getHandle(workflowId).query(grantStateQuery);
    expect(waiting).toMatchObject({ status: 'open', expiresAt, voidRequested: null });
    const voided = await bench.app.request(
      `/v1/admin/grants/${id}/void`,
      jsonRequest('POST', { reason: 'issued by mistake' }, admin),
    );
    expect(voided.status).toBe(202);
    expect(await bench.temporal.workflow.getHandle(workflowId).result()).toMatchObject({
      status: 'voided',
      closedCredits: 15,
    });
    await keepHistory(bench.temporal, 'grant-voided-while-waiting', workflowId);
    expect(await getGrant(id)).toMatchObject({ status: 'voided', remaining: 0 });
    expect(await ledger.walletBalance(customer.id)).toBe(0);

    const unknown = await bench.app.request(
      `/v1/admin/grants/${randomUUID()}/void`,
      jsonRequest('POST', { reason: 'nothing there' }, admin),
    );
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'grant_not_found' } });
    const notAnId = await bench.app.request(`/v1/admin/grants/grant-1`, auth(admin));
    expect(notAnId.status).toBe(400);
  });
});

describe('wallet views', () => {
  it('GET /v1/wallet shows available, by category and the open grants in burn-down order', async () => {
    const customer = await createCustomer(bench.db);
    const paid = (await (
      await postGrant({
        customerId: customer.id,
        credits: 100,
        category: 'paid',
        priority: 5,
        reason: 'paid first',
      })
    ).json()) as GrantView;
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const promo = (await (
      await postGrant({
        customerId: customer.id,
        credits: 40,
        category: 'promotional',
        expiresAt,
        reason: 'promo',
      })
    ).json()) as GrantView;
    await waitForGrant(paid.id, 'open');
    const promoOpen = await waitForGrant(promo.id, 'open');

    const view = await wallet(customer.id);
    expect(view).toMatchObject({
      balance: 140,
      available: 140,
      byCategory: { paid: 100, promotional: 40 },
    });
    expect(view.grants).toEqual([
      expect.objectContaining({ id: paid.id, category: 'paid', source: 'adjustment', priority: 5 }),
      expect.objectContaining({
        id: promo.id,
        category: 'promotional',
        source: 'promotion',
        remaining: 40,
        expiresAt,
        spendable: true,
      }),
    ]);

    // Priority 5 first: the paid grant gives 100, the promotional one the other 10.
    const debit = await spend(customer.id, 110);
    const res = await bench.app.request(
      '/v1/wallet/transactions',
      auth(await customerToken(customer.id)),
    );
    const page = (await res.json()) as {
      items: Array<{ id: number; type: string; grants: Array<Record<string, unknown>> }>;
    };
    const spent = page.items.find((i) => i.id === debit.entryId)!;
    expect(spent.grants).toEqual([
      { grantId: paid.id, amount: -100, kind: 'draw' },
      { grantId: promo.id, amount: -10, kind: 'draw' },
    ]);
    const granted = page.items.find((i) => i.type === 'grant' && i.id === promoOpen.entryId);
    expect(granted?.grants).toEqual([{ grantId: promo.id, amount: 40, kind: 'grant' }]);

    const left = await wallet(customer.id);
    expect(left).toMatchObject({ available: 30, byCategory: { paid: 0, promotional: 30 } });
    expect(left.grants.map((g) => g.id)).toEqual([promo.id]);

    const list = await bench.app.request(`/v1/admin/grants?customerId=${customer.id}`, auth(admin));
    const items = ((await list.json()) as { items: GrantView[] }).items;
    expect(items.map((g) => [g.id, g.remaining]).sort()).toEqual(
      [
        [paid.id, 0],
        [promo.id, 30],
      ].sort(),
    );
  });
});
