// Checkouts end to end: POST → checkout workflow → Stripe (stripe-mock) → signed webhook → credit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminToken, customerToken, deliveredNotifications } from '../../../test/helpers.js';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from '../../../test/checkout-harness.js';
import { sessionObject, stripeEvent } from '../../../test/stripe.js';
import { DEFAULT_CREDIT_PACKS } from '../../payments/packs.js';
import { searchAttributes } from '../../shared.js';

let bench: CheckoutBench;

beforeAll(async () => {
  bench = await startCheckoutBench('checkouts-api');
});

afterAll(async () => {
  await bench?.close();
});

describe('POST /v1/checkouts', () => {
  it.each(Object.entries(DEFAULT_CREDIT_PACKS))(
    'sells the %s pack: checkout URL at once, credits after the paid webhook, notification',
    async (pack, { credits, amount }) => {
      const customer = await bench.customer();
      const res = await bench.buy(customer.token, pack);
      expect(res.status).toBe(202);
      const started = (await res.json()) as CheckoutStarted;
      expect(started.workflowId).toBe(`checkout-${started.id}`);
      expect(started.status).toBe('init');
      expect(started.checkoutUrl).toMatch(/^https:\/\/checkout\.stripe\.com\//);

      const session = bench.stripe.session(started.id);
      expect(session.request).toMatchObject({ amount, credits, currency: 'eur', pack });
      expect(session.request.idempotencyKey).toBe(`${started.workflowId}:create-session`);
      const open = await bench.read(customer.token, started.id);
      expect(open).toMatchObject({ status: 'init', credits, amount, currency: 'eur', pack });

      const delivered = await bench.deliver(
        stripeEvent('checkout.session.completed', sessionObject(session)),
      );
      expect(delivered.status).toBe(200);

      const done = await bench.waitFor(customer.token, started.id, 'credited');
      await bench.temporal.workflow.getHandle(started.workflowId).result();
      expect(done).toMatchObject({ credits, amount, pack, checkoutUrl: started.checkoutUrl });
      expect(await bench.ledger.walletBalance(customer.id)).toBe(credits);

      const entries = await bench.db.sql<{ idempotency_key: string; type: string }[]>`
        select idempotency_key, type from entries where workflow_id = ${started.workflowId}`;
      expect(entries).toEqual([
        { idempotency_key: `topup:${session.paymentIntentId}`, type: 'topup' },
      ]);
      const [payment] = await bench.db.sql<{ status: string; payment_intent_id: string }[]>`
        select status, payment_intent_id from payments where id = ${started.id}`;
      expect(payment).toEqual({ status: 'credited', payment_intent_id: session.paymentIntentId });

      const notices = (await deliveredNotifications(bench.db, customer.id)).map(
        ({ kind, amount, balance_after }) => ({ kind, amount, balance_after }),
      );
      expect(notices).toEqual([
        { kind: 'credits_added', amount: String(credits), balance_after: String(credits) },
      ]);

      const description = await bench.temporal.workflow.getHandle(started.workflowId).describe();
      expect(description.status.name).toBe('COMPLETED');
      expect(description.typedSearchAttributes.get(searchAttributes.customerId)).toBe(customer.id);
      expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('credited');
    },
  );

  it('returns the same checkout for a retried POST with the same Idempotency-Key', async () => {
    const customer = await bench.customer();
    const key = `topup-${Date.now()}`;
    const [first, ...retries] = await Promise.all(
      Array.from({ length: 4 }, () => bench.buy(customer.token, 'small', key)),
    );
    const started = (await first!.json()) as CheckoutStarted;
    for (const res of retries) {
      expect(res.status).toBe(202);
      expect(await res.json()).toEqual(started);
    }
    expect(bench.stripe.sessions.get(started.id)).toBeDefined();

    const conflict = await bench.buy(customer.token, 'large', key);
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toMatchObject({ error: { code: 'idempotency_conflict' } });

    // Another customer with the same key gets their own checkout.
    const other = await bench.customer();
    const theirs = (await (await bench.buy(other.token, 'small', key)).json()) as CheckoutStarted;
    expect(theirs.id).not.toBe(started.id);

    await bench.deliver(
      stripeEvent('checkout.session.completed', sessionObject(bench.stripe.session(started.id))),
    );
    await bench.waitFor(customer.token, started.id, 'credited');
    const late = await bench.buy(customer.token, 'small', key);
    expect(late.status).toBe(202);
    expect(await late.json()).toMatchObject({ id: started.id, status: 'credited' });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
  });

  it('answers 400 for an unknown pack or a bad body, 403 for an admin token', async () => {
    const customer = await bench.customer();
    const unknown = await bench.buy(customer.token, 'huge');
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({
      error: {
        code: 'unknown_pack',
        message: expect.stringContaining('small, medium, large') as string,
      },
    });
    const bad = await bench.app.request('/v1/checkouts', {
      method: 'POST',
      headers: { authorization: `Bearer ${customer.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ pack: 'small', credits: 1_000_000 }),
    });
    expect(bad.status).toBe(400);
    const asAdmin = await bench.buy(await adminToken(), 'small');
    expect(asAdmin.status).toBe(403);
    const payments = await bench.db.sql`select id from payments where customer_id = ${customer.id}`;
    expect(payments).toHaveLength(0);
  });
});

describe('GET /v1/checkouts/:id', () => {
  it('shows a checkout to its owner and admins only', async () => {
    const owner = await bench.customer();
    const started = (await (await bench.buy(owner.token, 'medium')).json()) as CheckoutStarted;
    const stranger = await customerToken((await bench.customer()).id);
    const hidden = await bench.app.request(`/v1/checkouts/${started.id}`, {
      headers: { authorization: `Bearer ${stranger}` },
    });
    expect(hidden.status).toBe(404);
    const admin = await bench.read(await adminToken(), started.id);
    expect(admin).toMatchObject({ id: started.id, pack: 'medium', status: 'init' });
    const missing = await bench.app.request('/v1/checkouts/pay_unknown', {
      headers: { authorization: `Bearer ${owner.token}` },
    });
    expect(missing.status).toBe(404);
    // Pay it, so the file ends with no open checkout.
    await bench.deliver(
      stripeEvent('checkout.session.completed', sessionObject(bench.stripe.session(started.id))),
    );
    await bench.waitFor(owner.token, started.id, 'credited');
  });
});
