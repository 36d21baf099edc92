// Ownership, generated from the OpenAPI document: every route is walked with customer B's token
// against customer A's things. The table below must name every route of the document, so a new
// route fails this test until someone says whose things it touches.
import type { Client } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import { workflowIds } from '../src/shared.js';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  expectLedgerConsistent,
  testApp,
  testDatabase,
  uniqueId,
  type TestCustomer,
} from './helpers.js';

interface Fixtures {
  a: TestCustomer;
  b: TestCustomer;
  seller: TestCustomer;
  verificationId: string;
  orderId: string;
  paymentId: string;
  /** A dispute on A's payment. */
  disputeId: string;
  /** A's item, still for sale. */
  itemForSale: string;
  /** An item A bought from another seller. */
  itemBought: string;
  /** A's open grant: never in B's wallet views. */
  grantId: string;
}

type Params = Record<string, string>;

/**
 * How a route relates to customers' things:
 * - owned: it reads or acts on one resource; B naming A's gets 403 or 404 and learns nothing.
 * - admin: B gets 403.
 * - own: it acts on the caller's own account; B cannot point it at A (a body naming A is refused).
 * - shared: everyone signed in reads it; B's answer never contains A's id.
 * Every route with a `customerId` query parameter is also called with B's `?customerId=A`.
 */
type RouteCase =
  | {
      kind: 'owned';
      params: (f: Fixtures) => Params[];
      body?: unknown;
      /** A's resource is as it was after B's attempt. */
      unchanged?: (f: Fixtures) => Promise<void>;
    }
  | { kind: 'admin'; params?: (f: Fixtures) => Params[]; body?: unknown }
  | { kind: 'own'; body?: unknown }
  | { kind: 'shared'; params?: (f: Fixtures) => Params[]; query?: (f: Fixtures) => string };

const ROUTES: Record<string, RouteCase> = {
  'POST /v1/customers': { kind: 'admin', body: { email: 'someone@example.test' } },
  'GET /v1/customers/{ref}': {
    kind: 'owned',
    params: (f) => [{ ref: f.a.id }, { ref: f.a.email }, { ref: f.a.externalId! }],
  },
  'GET /v1/wallet': { kind: 'own' },
  'GET /v1/wallet/transactions': { kind: 'own' },
  'GET /v1/wallet/events': { kind: 'own' },
  'GET /v1/wallet/alerts': { kind: 'own' },
  'PUT /v1/wallet/alerts': { kind: 'own', body: { thresholds: [50] } },
  'GET /v1/wallet/auto-topup': { kind: 'own' },
  'PUT /v1/wallet/auto-topup': {
    kind: 'own',
    body: { enabled: false, threshold: 100, pack: 'small', monthlyCap: 3 },
  },
  'POST /v1/admin/adjustments': {
    kind: 'admin',
    body: { customerId: '00000000-0000-4000-8000-000000000000', amount: 5, reason: 'goodwill' },
  },
  'GET /v1/admin/adjustments/{id}': { kind: 'admin', params: () => [{ id: 'adj_x' }] },
  'POST /v1/admin/grants': {
    kind: 'admin',
    body: {
      customerId: '00000000-0000-4000-8000-000000000000',
      credits: 5,
      category: 'promotional',
      reason: 'goodwill',
    },
  },
  'GET /v1/admin/grants': { kind: 'admin' },
  'GET /v1/admin/grants/{id}': { kind: 'admin', params: (f) => [{ id: f.grantId }] },
  'POST /v1/admin/grants/{id}/void': {
    kind: 'admin',
    params: (f) => [{ id: f.grantId }],
    body: { reason: 'B wants A’s grant gone' },
  },
  'POST /v1/admin/reconciliations': {
    kind: 'admin',
    body: { from: '2026-11-20T00:00:00Z', to: '2026-11-21T00:00:00Z' },
  },
  'GET /v1/admin/reconciliations': { kind: 'admin' },
  'GET /v1/admin/reconciliations/{id}': { kind: 'admin', params: () => [{ id: 'rec_x' }] },
  'GET /v1/notifications': { kind: 'own' },
  'GET /v1/notifications/preferences': { kind: 'own' },
  'PUT /v1/notifications/preferences': { kind: 'own', body: { kinds: null, minAmount: 7 } },
  'GET /v1/prices': { kind: 'shared' },
  'PUT /v1/admin/prices/{service}/{country}': {
    kind: 'admin',
    params: () => [{ service: 'whatsapp', country: 'US' }],
    body: { price: 1 },
  },
  'POST /v1/verifications': { kind: 'own', body: { service: 'whatsapp', country: 'US' } },
  'GET /v1/verifications/{id}': { kind: 'owned', params: (f) => [{ id: f.verificationId }] },
  'POST /v1/verifications/{id}/cancel': {
    kind: 'owned',
    params: (f) => [{ id: f.verificationId }],
    unchanged: async (f) => {
      const [row] = await db.sql`select status from verifications where id = ${f.verificationId}`;
      expect(row).toEqual({ status: 'failed' });
    },
  },
  'POST /v1/items': { kind: 'own', body: { title: 'lamp', price: 10 } },
  'GET /v1/items': { kind: 'shared', query: (f) => `sellerId=${f.seller.id}` },
  'GET /v1/items/{id}': { kind: 'shared', params: (f) => [{ id: f.itemBought }] },
  'POST /v1/items/{id}/withdraw': {
    kind: 'owned',
    params: (f) => [{ id: f.itemForSale }],
    unchanged: async (f) => {
      const [row] = await db.sql`select status from items where id = ${f.itemForSale}`;
      expect(row).toEqual({ status: 'available' });
    },
  },
  'POST /v1/orders': { kind: 'own', body: { itemIds: [] } },
  'GET /v1/orders/{id}': { kind: 'owned', params: (f) => [{ id: f.orderId }] },
  'POST /v1/checkouts': { kind: 'own', body: { pack: 'small' } },
  'GET /v1/checkouts/{id}': { kind: 'owned', params: (f) => [{ id: f.paymentId }] },
  'POST /v1/refunds': {
    kind: 'owned',
    params: () => [{}],
    // A getter: the payment exists only once the fixtures are made.
    body: {
      get paymentId() {
        return f.paymentId;
      },
      reason: 'B wants A’s money',
    },
    unchanged: async (f) => {
      const rows = await db.sql`select id from refunds where payment_id = ${f.paymentId}`;
      expect(rows).toEqual([{ id: `stripe-${f.paymentId}` }]);
    },
  },
  'GET /v1/refunds/{id}': { kind: 'owned', params: (f) => [{ id: `stripe-${f.paymentId}` }] },
  'GET /v1/refunds': { kind: 'shared', query: (f) => `paymentId=${f.paymentId}` },
  'GET /v1/admin/health': { kind: 'admin' },
  'GET /v1/admin/monitor': { kind: 'admin' },
  'GET /v1/admin/customers/{ref}/consistency': {
    kind: 'admin',
    params: (f) => [{ ref: f.a.id }, { ref: f.a.email }],
  },
  'GET /v1/admin/alerts': { kind: 'admin' },
  'POST /v1/admin/alerts/{id}/ack': { kind: 'admin', params: () => [{ id: '1' }] },
  'POST /v1/admin/customers/{id}/anonymise': {
    kind: 'admin',
    params: (f) => [{ id: f.a.id }],
    body: { reason: 'erasure request' },
  },
  'GET /v1/disputes': { kind: 'own' },
  'GET /v1/disputes/{id}': { kind: 'owned', params: (f) => [{ id: f.disputeId }] },
};

interface Operation {
  key: string;
  method: string;
  path: string;
  queryParams: string[];
  hasBody: boolean;
}

let db: Database;
let temporal: Client;
let app: App;
let operations: Operation[];
let f: Fixtures;
let tokenB: string;

const hex = () => randomBytes(16).toString('hex');

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
  // No worker: nothing B does may need one, and anything it wrongly starts stays visible.
  app = testApp(db, temporal, uniqueId('cross-customer'));
  const doc = (await (await app.request('/openapi.json')).json()) as {
    paths: Record<
      string,
      Record<string, { parameters?: { in: string; name: string }[]; requestBody?: unknown }>
    >;
  };
  operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({
      key: `${method.toUpperCase()} ${path}`,
      method: method.toUpperCase(),
      path,
      queryParams: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
      hasBody: op.requestBody !== undefined,
    })),
  );

  const a = await createCustomer(db, { externalId: uniqueId('ext-a') });
  const b = await createCustomer(db);
  const seller = await createCustomer(db);
  tokenB = await customerToken(b.id);
  const verificationId = `ver_${hex()}`;
  await db.sql`
    insert into verifications (id, workflow_id, customer_id, service, country, price, timeout_seconds, status, error)
    values (${verificationId}, ${workflowIds.verification(verificationId)}, ${a.id}, 'whatsapp', 'US', 10, 60,
            'failed', 'insufficient_credits')`;
  const orderId = `ord_${hex()}`;
  await db.sql`
    insert into orders (id, workflow_id, buyer_id, item_ids, status, error_code, error_message)
    values (${orderId}, ${workflowIds.order(orderId)}, ${a.id}, ${[]}::uuid[], 'failed',
            'insufficient_credits', 'Not enough credits.')`;
  const paymentId = `pay_${hex()}`;
  await db.sql`
    insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
    values (${paymentId}, ${workflowIds.checkout(paymentId)}, ${a.id}, 'small', 100, 500, 'eur', 'expired')`;
  await db.sql`
    insert into refunds (id, workflow_id, kind, customer_id, payment_id, reason, requested_by, status)
    values (${`stripe-${paymentId}`}, ${workflowIds.stripeRefund(paymentId)}, 'stripe', ${a.id},
            ${paymentId}, 'refunded at Stripe', 'stripe', 'refunded')`;
  const disputeId = `dp_test_${hex()}`;
  await db.sql`
    insert into disputes (id, workflow_id, payment_id, customer_id, amount, currency, credits, status)
    values (${disputeId}, ${workflowIds.dispute(disputeId)}, ${paymentId}, ${a.id}, 500, 'eur', 100, 'open')`;
  const [forSale] = await db.sql<{ id: string }[]>`
    insert into items (seller_id, owner_id, title, price, status)
    values (${a.id}, ${a.id}, 'A sells this', 10, 'available') returning id`;
  const [bought] = await db.sql<{ id: string }[]>`
    insert into items (seller_id, owner_id, title, price, status)
    values (${seller.id}, ${a.id}, 'A bought this', 10, 'sold') returning id`;
  await db.sql`
    insert into notification_preferences (customer_id, kinds, min_amount)
    values (${a.id}, ${null}, 3)`;
  const grant = await createLedger(db.sql).postEntry({
    idempotencyKey: uniqueId('cross-grant'),
    type: 'grant',
    description: 'A’s promotional grant',
    lines: [
      {
        account: { wallet: a.id },
        amount: 25,
        credit: { grant: { category: 'promotional', source: 'promotion' } },
      },
      { account: { system: 'adjustments' }, amount: -25 },
    ],
  });
  f = {
    a,
    b,
    seller,
    verificationId,
    orderId,
    paymentId,
    disputeId,
    itemForSale: forSale!.id,
    itemBought: bought!.id,
    grantId: grant.grants[0]!.grantId,
  };
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

const fill = (path: string, params: Params) =>
  path.replace(/\{(\w+)\}/g, (_m, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`no sample for {${name}} in ${path}`);
    return encodeURIComponent(value);
  });

async function call(op: Operation, url: string, token: string, body?: unknown) {
  const res = await app.request(url, {
    method: op.method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      'idempotency-key': uniqueId('cross'),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  // An event stream must not be left open; everything else is read whole.
  if (res.headers.get('content-type')?.includes('text/event-stream')) {
    await res.body?.cancel();
    return { status: res.status, text: '' };
  }
  return { status: res.status, text: await res.text() };
}

/** Nothing started on this file's (worker-less) task queue for A. */
async function expectNothingStartedForA() {
  const rows = await db.sql`
    select 1 from verifications where customer_id = ${f.a.id} and id <> ${f.verificationId}
    union all select 1 from orders where buyer_id = ${f.a.id} and id <> ${f.orderId}
    union all select 1 from payments where customer_id = ${f.a.id} and id <> ${f.paymentId}`;
  expect(rows).toHaveLength(0);
}

describe('every route of the OpenAPI document, walked with another customer’s token', () => {
  it('the table names exactly the routes of the document', () => {
    expect(operations.length).toBeGreaterThan(10);
    expect(Object.keys(ROUTES).sort()).toEqual(operations.map((o) => o.key).sort());
  });

  it('customer B never reads or acts on customer A’s things', async () => {
    const checked: string[] = [];
    for (const op of operations) {
      const route = ROUTES[op.key];
      if (!route) continue; // reported by the test above
      const paramSets =
        'params' in route && route.params ? route.params(f) : op.path.includes('{') ? [] : [{}];
      expect(paramSets.length, `${op.key} needs sample params`).toBeGreaterThan(0);
      for (const params of paramSets) {
        const base = fill(op.path, params);
        const body = 'body' in route ? route.body : op.hasBody ? {} : undefined;
        const label = `${op.key} ${JSON.stringify(params)}`;

        if (route.kind === 'admin') {
          const res = await call(op, base, tokenB, body);
          expect(res.status, label).toBe(403);
        } else if (route.kind === 'owned') {
          const res = await call(op, base, tokenB, body);
          expect([403, 404], `${label} answered ${res.status}`).toContain(res.status);
          expect(res.text, label).not.toContain(f.a.id);
          expect(res.text, label).not.toContain(f.a.email);
          await route.unchanged?.(f);
        } else if (route.kind === 'shared') {
          const query = route.query ? `?${route.query(f)}` : '';
          const res = await call(op, `${base}${query}`, tokenB, body);
          expect(res.status, label).toBe(200);
          expect(res.text, label).not.toContain(f.a.id);
        } else if (op.method === 'GET') {
          const res = await call(op, base, tokenB);
          expect(res.status, label).toBe(200);
          expect(res.text, label).not.toContain(f.a.id);
          expect(res.text, label).not.toContain(f.grantId);
        } else if (op.hasBody) {
          // Acting for A by naming A in the body is refused (the schemas are strict).
          const res = await call(op, base, tokenB, { ...(body as object), customerId: f.a.id });
          expect(res.status, label).toBe(400);
        }

        if (op.queryParams.includes('customerId')) {
          const res = await call(op, `${base}?customerId=${f.a.id}`, tokenB, body);
          expect(res.status, `${label} ?customerId=A answered ${res.status}`).toBe(403);
          expect(res.text, label).not.toContain(f.a.email);
        }
        checked.push(label);
      }
    }
    expect(checked.length).toBeGreaterThanOrEqual(operations.length);
    await expectNothingStartedForA();
    const [prefs] = await db.sql`
      select min_amount from notification_preferences where customer_id = ${f.a.id}`;
    expect(prefs).toEqual({ min_amount: '3' });
  });

  it('an admin naming A reaches A’s things (the walk is not refusing everyone)', async () => {
    const admin = await adminToken();
    const get = (url: string) =>
      app.request(url, { headers: { authorization: `Bearer ${admin}` } });
    const wallet = await get(`/v1/wallet?customerId=${f.a.id}`);
    expect(wallet.status).toBe(200);
    expect(await wallet.text()).toContain(f.grantId);
    expect((await get(`/v1/admin/grants/${f.grantId}`)).status).toBe(200);
    expect((await get(`/v1/notifications?customerId=${f.a.id}`)).status).toBe(200);
    expect((await get(`/v1/verifications/${f.verificationId}`)).status).toBe(200);
    expect((await get(`/v1/orders/${f.orderId}`)).status).toBe(200);
    expect((await get(`/v1/checkouts/${f.paymentId}`)).status).toBe(200);
    expect((await get(`/v1/refunds/stripe-${f.paymentId}`)).status).toBe(200);
    expect((await get(`/v1/disputes/${f.disputeId}`)).status).toBe(200);
    expect((await get(`/v1/customers/${f.a.id}`)).status).toBe(200);
    const own = await customerToken(f.a.id);
    const mine = await app.request(`/v1/customers/${encodeURIComponent(f.a.email)}`, {
      headers: { authorization: `Bearer ${own}` },
    });
    expect(mine.status).toBe(200);
  });
});
