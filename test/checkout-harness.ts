// One checkout test bench per file: its own task queue, a worker whose real Stripe gateway talks to
// a stateful Stripe double in front of stripe-mock, the real app with the webhook secret, and the
// checks every file ends with.
import type { Client } from '@temporalio/client';
import { expect } from 'vitest';
import { createActivities, type Activities } from '../src/activities/index.js';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import type { CreditPacks } from '../src/payments/packs.js';
import { CREDITED_STATUSES } from '../src/payments/state-machine.js';
import type { CheckoutState } from '../src/shared.js';
import {
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
  type TestCustomer,
} from './helpers.js';
import {
  StripeDouble,
  TEST_WEBHOOK_SECRET,
  sessionObject,
  stripeEvent,
  webhookRequest,
  startStripeDouble,
} from './stripe.js';

export interface CheckoutStarted {
  id: string;
  workflowId: string;
  status: string;
  checkoutUrl: string | null;
}

export interface CheckoutBench {
  db: Database;
  temporal: Client;
  app: App;
  ledger: Ledger;
  stripe: StripeDouble;
  taskQueue: string;
  customer(): Promise<TestCustomer & { token: string }>;
  buy(token: string, pack: string, key?: string): Promise<Response>;
  deliver(event: unknown, options?: Parameters<typeof webhookRequest>[1]): Promise<Response>;
  read(token: string, id: string): Promise<CheckoutState>;
  waitFor(token: string, id: string, status: string, timeoutMs?: number): Promise<CheckoutState>;
  close(): Promise<void>;
}

export async function startCheckoutBench(
  name: string,
  options: {
    expirySeconds?: number;
    worker?: boolean;
    /** Replaces activities; receives the real ones to wrap. */
    wrap?: (real: Activities) => Partial<Activities>;
    /** The packs on sale, for the API and the worker alike (the defaults when absent). */
    packs?: CreditPacks;
  } = {},
): Promise<CheckoutBench> {
  const taskQueue = uniqueId(name);
  const db = testDatabase();
  const temporal = await connectTestClient();
  const stripe = await startStripeDouble();
  const packs = options.packs ? { packs: options.packs } : {};
  const real = createActivities({ db, stripe: stripe.gateway, ...packs });
  const worker =
    options.worker === false
      ? undefined
      : await startTestWorker(
          db,
          taskQueue,
          { stripe: stripe.gateway, ...packs },
          options.wrap?.(real) ?? {},
        );
  const app = testApp(db, temporal, taskQueue, {
    stripeWebhookSecret: TEST_WEBHOOK_SECRET,
    ...(options.expirySeconds || options.packs
      ? {
          checkout: {
            ...packs,
            ...(options.expirySeconds ? { expirySeconds: options.expirySeconds } : {}),
          },
        }
      : {}),
  });
  const customers: string[] = [];

  const read = async (token: string, id: string) => {
    const res = await app.request(`/v1/checkouts/${id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (res.status !== 200) throw new Error(`GET checkout ${id}: ${res.status}`);
    return (await res.json()) as CheckoutState;
  };

  return {
    db,
    temporal,
    app,
    ledger: createLedger(db.sql),
    stripe,
    taskQueue,
    async customer() {
      const customer = await createCustomer(db);
      customers.push(customer.id);
      return { ...customer, token: await customerToken(customer.id) };
    },
    buy: async (token, pack, key) =>
      app.request(
        '/v1/checkouts',
        jsonRequest('POST', { pack }, token, key ? { 'idempotency-key': key } : {}),
      ),
    deliver: async (event, deliveryOptions) =>
      app.request('/webhooks/stripe', webhookRequest(event, deliveryOptions)),
    read,
    waitFor: (token, id, status, timeoutMs = 20_000) =>
      eventually(
        async () => {
          const state = await read(token, id);
          return state.status === status ? state : undefined;
        },
        { timeoutMs },
      ),
    async close() {
      await worker?.stop();
      try {
        await expectPaidPaymentsCreditedOnce(db, customers);
        await expectLedgerConsistent(db);
      } finally {
        await stripe.close();
        await temporal.connection.close();
        await db.close();
      }
    },
  };
}

/**
 * Every payment these customers made that Stripe reported paid ended credited, with exactly one
 * `topup` entry; every other payment has none.
 */
export async function expectPaidPaymentsCreditedOnce(db: Database, customerIds: string[]) {
  const rows = await db.sql<{ id: string; status: string; topups: string }[]>`
    select p.id, p.status, count(e.id) as topups
    from payments p
    left join entries e on e.type = 'topup' and e.metadata->>'paymentId' = p.id
    where p.customer_id = any(${customerIds}::uuid[])
    group by p.id`;
  const wrong = rows.filter((r) =>
    ['paid', ...CREDITED_STATUSES].includes(r.status)
      ? !(r.status !== 'paid' && Number(r.topups) === 1)
      : Number(r.topups) !== 0,
  );
  expect(wrong).toEqual([]);
}

/** A customer whose top-up of `pack` was paid at Stripe (the paid webhook delivered) and credited. */
export async function creditedTopup(on: CheckoutBench, pack = 'small') {
  const customer = await on.customer();
  const res = await on.buy(customer.token, pack);
  expect(res.status).toBe(202);
  const started = (await res.json()) as CheckoutStarted;
  expect(on.stripe.pay(started.id)).toBe(true);
  const session = on.stripe.session(started.id);
  const paid = await on.deliver(stripeEvent('checkout.session.completed', sessionObject(session)));
  expect(paid.status).toBe(200);
  await on.waitFor(customer.token, started.id, 'credited');
  return { customer, paymentId: started.id, session, intent: session.paymentIntentId };
}
