// The money flows over grants, end to end: a top-up creates a paid grant dated by its pack and
// starts the grant's lifecycle; a top-up refund takes the top-up's own grant first and a refused
// one puts it back there; a verification that timed out and an order that sold only some items
// give the credits back to the grants they drew from. Real Temporal, PostgreSQL and Stripe double.
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TransferItemInput } from '../src/activities/marketplace.js';
import type { GrantCategory } from '../src/ledger/grants.js';
import type { Ledger } from '../src/ledger/ledger.js';
import type { CreditPacks } from '../src/payments/packs.js';
import type { RefundState } from '../src/shared.js';
import { creditedTopup, startCheckoutBench, type CheckoutBench } from './checkout-harness.js';
import {
  createCustomer,
  eventually,
  expectLedgerConsistent,
  jsonRequest,
  postGrant,
  uniqueId,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';
import { sessionObject, stripeEvent } from './stripe.js';
import { workflowBench, type WorkflowBench } from './workflow-bench.js';

const DAY = 24 * 60 * 60 * 1000;
const packs: CreditPacks = {
  small: { credits: 100, amount: 500, currency: 'eur' },
  monthly: { credits: 100, amount: 500, currency: 'eur', expiresInDays: 30 },
};

let checkouts: CheckoutBench;
let flows: WorkflowBench;
/** Items the order bench withdraws just before their transfer, as a seller racing the order. */
const withdrawBeforeTransfer = new Set<string>();

beforeAll(async () => {
  [checkouts, flows] = await Promise.all([
    startCheckoutBench('grants-checkout', { packs }),
    workflowBench('grants-flows', {
      deps: {
        marketplaceHooks: {
          beforeTransfer: async (input: TransferItemInput) => {
            if (!withdrawBeforeTransfer.has(input.item.itemId)) return;
            await flows.db.sql`
              update items set status = 'withdrawn' where id = ${input.item.itemId}`;
          },
        },
      },
    }),
  ]);
});

// The checker, grant invariants included, is clean after every flow.
afterEach(async () => {
  await expectLedgerConsistent(flows.db);
});

afterAll(async () => {
  await flows?.close();
  // Ends with the ledger checker and "every paid payment credited once".
  await checkouts?.close();
});

/** Credits a grant of `credits` in `category`, answering its id. */
const grant = (ledger: Ledger, customerId: string, credits: number, category: GrantCategory) =>
  postGrant(ledger, customerId, credits, {
    category,
    source: category === 'paid' ? 'adjustment' : 'promotion',
  });

interface GrantRow {
  id: string;
  category: string;
  source: string;
  credits: string;
  remaining: string;
  expires_at: Date | string | null;
}

async function grantsOf(on: { db: CheckoutBench['db'] }, customerId: string) {
  return on.db.sql<GrantRow[]>`
    select id, category, source, credits, remaining, expires_at from grants
    where customer_id = ${customerId} order by created_at, id`;
}

async function remaining(on: { db: CheckoutBench['db'] }, ids: string[]) {
  const rows = await on.db.sql<{ id: string; remaining: string }[]>`
    select id, remaining from grants where id = any(${ids}::uuid[])`;
  return Object.fromEntries(
    ids.map((id) => [id, Number(rows.find((r) => r.id === id)!.remaining)]),
  );
}

/** The grant shares of the entry under `key`, as [grantId, amount, kind]. */
async function sharesUnder(on: { db: CheckoutBench['db'] }, key: string) {
  const rows = await on.db.sql<{ grant_id: string; amount: string; kind: string }[]>`
    select gp.grant_id, gp.amount, gp.kind from grant_postings gp
    join entries e on e.id = gp.entry_id where e.idempotency_key = ${key} order by gp.id`;
  return rows.map((r) => [r.grant_id, Number(r.amount), r.kind]);
}

describe('top-ups create paid grants', () => {
  it('dates the grant by the pack’s expiresInDays and starts its lifecycle workflow', async () => {
    const before = Date.now();
    const { customer, paymentId } = await creditedTopup(checkouts, 'monthly');
    const [topup] = await grantsOf(checkouts, customer.id);
    expect(topup).toMatchObject({ category: 'paid', source: 'topup', credits: '100' });
    const expiresAt = new Date(topup!.expires_at!).getTime();
    expect(expiresAt).toBeGreaterThanOrEqual(before + 30 * DAY);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 30 * DAY);

    // The grant's own workflow is started to expire it on time, once.
    const lifecycle = checkouts.temporal.workflow.getHandle(`grant-${topup!.id}`);
    const described = await eventually(() => lifecycle.describe().catch(() => undefined));
    expect(described.type).toBe('grant');
    const [payment] = await checkouts.db.sql<{ workflow_id: string }[]>`
      select workflow_id from payments where id = ${paymentId}`;
    const checkout = checkouts.temporal.workflow.getHandle(payment!.workflow_id);
    await checkout.result();
    await keepHistory(checkouts.temporal, 'checkout-credited-grant-expiry', payment!.workflow_id);
  });

  it('gives a pack without expiresInDays a grant that never expires, and no lifecycle', async () => {
    const { customer } = await creditedTopup(checkouts, 'small');
    const [topup] = await grantsOf(checkouts, customer.id);
    expect(topup).toMatchObject({ category: 'paid', source: 'topup', expires_at: null });
    await expect(
      checkouts.temporal.workflow.getHandle(`grant-${topup!.id}`).describe(),
    ).rejects.toThrow();
  });
});

describe('a top-up refund', () => {
  async function refund(customer: { token: string }, body: Record<string, unknown>) {
    const res = await checkouts.app.request(
      '/v1/refunds',
      jsonRequest('POST', { reason: 'changed my mind', ...body }, customer.token, {
        'idempotency-key': uniqueId('refund'),
      }),
    );
    expect(res.status, await res.clone().text()).toBe(202);
    const { id, workflowId } = (await res.json()) as { id: string; workflowId: string };
    const state = await eventually(
      async () => {
        const read = await checkouts.app.request(`/v1/refunds/${id}`, {
          headers: { authorization: `Bearer ${customer.token}` },
        });
        const s = (await read.json()) as RefundState;
        return ['refunded', 'failed', 'rejected'].includes(s.status) ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    return { state, workflowId };
  }

  it('claws back from the top-up’s own grant first, though burn-down would draw the promotion', async () => {
    const { customer, paymentId } = await creditedTopup(checkouts, 'monthly');
    const promo = await grant(checkouts.ledger, customer.id, 50, 'promotional');
    const [topup] = await grantsOf(checkouts, customer.id);
    const { state, workflowId } = await refund(customer, { paymentId, credits: 40 });
    expect(state.status).toBe('refunded');
    expect(await sharesUnder(checkouts, `${workflowId}:clawback`)).toEqual([
      [topup!.id, -40, 'draw'],
    ]);
    expect(await remaining(checkouts, [topup!.id, promo])).toEqual({
      [topup!.id]: 60,
      [promo]: 50,
    });
  });

  it('puts the credits back into the grants the claw-back drew from when Stripe refuses', async () => {
    const { customer, paymentId } = await creditedTopup(checkouts, 'monthly');
    const [topup] = await grantsOf(checkouts, customer.id);
    const paid = await grant(checkouts.ledger, customer.id, 50, 'paid');
    // Spend 30: the top-up expires, so it goes first; 70 of it are left.
    await checkouts.ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'verification_purchase',
      description: 'test purchase',
      lines: [
        { account: { wallet: customer.id }, amount: -30 },
        { account: { system: 'revenue' }, amount: 30 },
      ],
    });
    checkouts.stripe.refundOutcome = 'failed';
    try {
      // 90 of the payment's 100 credits: the top-up's 70, then 20 of the other grant.
      const { state, workflowId } = await refund(customer, { paymentId, credits: 90 });
      expect(state).toMatchObject({ status: 'failed', error: { code: 'refund_refused' } });
      expect(await sharesUnder(checkouts, `${workflowId}:clawback`)).toEqual([
        [topup!.id, -70, 'draw'],
        [paid, -20, 'draw'],
      ]);
      expect(await sharesUnder(checkouts, `${workflowId}:recredit`)).toEqual([
        [topup!.id, 70, 'return'],
        [paid, 20, 'return'],
      ]);
    } finally {
      checkouts.stripe.refundOutcome = 'succeeded';
    }
    expect(await remaining(checkouts, [topup!.id, paid])).toEqual({
      [topup!.id]: 70,
      [paid]: 50,
    });
    expect(await checkouts.ledger.walletBalance(customer.id)).toBe(120);
  });
});

describe('taking a payment back when part of the balance is not spendable', () => {
  /**
   * A customer with a credited `monthly` top-up of which 30 were spent (70 left in its grant) and
   * a promotion of 200 that becomes spendable only tomorrow: balance 270, spendable 70.
   */
  async function withFutureGrant() {
    const topped = await creditedTopup(checkouts, 'monthly');
    const [topup] = await grantsOf(checkouts, topped.customer.id);
    const posted = await checkouts.ledger.postEntry({
      idempotencyKey: uniqueId('future'),
      type: 'adjustment',
      description: 'promotion from tomorrow',
      lines: [
        {
          account: { wallet: topped.customer.id },
          amount: 200,
          credit: {
            grant: {
              category: 'promotional',
              source: 'promotion',
              effectiveAt: new Date(Date.now() + DAY),
            },
          },
        },
        { account: { system: 'adjustments' }, amount: -200 },
      ],
    });
    await checkouts.ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'verification_purchase',
      description: 'test purchase',
      lines: [
        { account: { wallet: topped.customer.id }, amount: -30 },
        { account: { system: 'revenue' }, amount: 30 },
      ],
    });
    expect(await checkouts.ledger.walletBalance(topped.customer.id)).toBe(270);
    return { ...topped, topupGrant: topup!.id, future: posted.grants[0]!.grantId };
  }

  async function deliver(event: unknown) {
    const res = await checkouts.deliver(event);
    expect(res.status, await res.clone().text()).toBe(200);
  }

  it('a dispute holds what is spendable, from the top-up’s grant, and a win gives it back there', async () => {
    const { customer, paymentId, topupGrant, future } = await withFutureGrant();
    const dispute = checkouts.stripe.openDispute(paymentId);
    await deliver(stripeEvent('charge.dispute.created', checkouts.stripe.disputeObject(dispute)));
    const held = await eventually(async () => {
      const [row] = await checkouts.db.sql<{ held_credits: string }[]>`
        select held_credits from disputes where id = ${dispute.id}`;
      return Number(row?.held_credits) > 0 ? Number(row!.held_credits) : undefined;
    });
    expect(held).toBe(70);
    expect(await sharesUnder(checkouts, `dispute:${dispute.id}:hold`)).toEqual([
      [topupGrant, -70, 'draw'],
    ]);

    checkouts.stripe.closeDispute(dispute.id, 'won');
    await deliver(stripeEvent('charge.dispute.closed', checkouts.stripe.disputeObject(dispute)));
    await eventually(async () => {
      const [row] = await checkouts.db.sql<{ status: string }[]>`
        select status from disputes where id = ${dispute.id}`;
      return row?.status === 'won' ? true : undefined;
    });
    expect(await sharesUnder(checkouts, `dispute:${dispute.id}:close`)).toEqual([
      [topupGrant, 70, 'return'],
    ]);
    expect(await remaining(checkouts, [topupGrant, future])).toEqual({
      [topupGrant]: 70,
      [future]: 200,
    });
    expect(await checkouts.ledger.walletBalance(customer.id)).toBe(270);
  });

  it('a refund made at Stripe takes what is spendable from the top-up’s grant; the rest is debt', async () => {
    const { customer, paymentId, topupGrant, future } = await withFutureGrant();
    const refund = checkouts.stripe.refundAtStripe(paymentId);
    await deliver(stripeEvent('charge.refunded', checkouts.stripe.chargeObject(paymentId)));
    const row = await eventually(async () => {
      const [r] = await checkouts.db.sql<{ credits: string; debt_credits: string }[]>`
        select credits, debt_credits from refunds where stripe_refund_id = ${refund.id}`;
      return r;
    });
    expect(row).toEqual({ credits: '100', debt_credits: '30' });
    expect(await sharesUnder(checkouts, `stripe-refund:${refund.id}`)).toEqual([
      [topupGrant, -70, 'draw'],
    ]);
    expect(await remaining(checkouts, [topupGrant, future])).toEqual({
      [topupGrant]: 0,
      [future]: 200,
    });
    expect(await checkouts.ledger.walletBalance(customer.id)).toBe(200);

    // The next top-up settles the debt inside its own entry: its grant holds only the rest.
    const res = await checkouts.buy(customer.token, 'monthly');
    const next = (await res.json()) as { id: string };
    expect(checkouts.stripe.pay(next.id)).toBe(true);
    const session = checkouts.stripe.session(next.id);
    await deliver(stripeEvent('checkout.session.completed', sessionObject(session)));
    await checkouts.waitFor(customer.token, next.id, 'credited');
    const grants = await grantsOf(checkouts, customer.id);
    expect(grants.filter((g) => g.source === 'topup').map((g) => g.credits)).toEqual(['100', '70']);
    expect(await checkouts.ledger.walletBalance(customer.id)).toBe(270);
  });
});

describe('purchases give credits back to the grants they drew from', () => {
  it('a verification that timed out: 30 promotional + 20 paid go back to the same grants', async () => {
    const customer = await createCustomer(flows.db);
    const promo = await grant(flows.ledger, customer.id, 30, 'promotional');
    const paid = await grant(flows.ledger, customer.id, 100, 'paid');
    const handle = await flows.startVerification(customer.id, { price: 50, timeoutSeconds: 1 });
    await flows.settled(handle);
    expect(await flows.entryTypes(handle.workflowId)).toEqual([
      'verification_purchase',
      'verification_refund',
    ]);
    expect(await sharesUnder(flows, `${handle.workflowId}:debit`)).toEqual([
      [promo, -30, 'draw'],
      [paid, -20, 'draw'],
    ]);
    expect(await sharesUnder(flows, `${handle.workflowId}:refund`)).toEqual([
      [promo, 30, 'return'],
      [paid, 20, 'return'],
    ]);
    expect(await remaining(flows, [promo, paid])).toEqual({ [promo]: 30, [paid]: 100 });
    expect(await flows.ledger.walletBalance(customer.id)).toBe(130);
  });

  it('an order that sold part of its cart, then a goodwill refund of an item: shares back, never more than drawn', async () => {
    const buyer = await createCustomer(flows.db);
    const promo = await grant(flows.ledger, buyer.id, 30, 'promotional');
    const paid = await grant(flows.ledger, buyer.id, 100, 'paid');
    const kept = await flows.item(20);
    const lost = await flows.item(25);
    const other = await flows.item(15);
    withdrawBeforeTransfer.add(lost.id);
    const handle = await flows.startOrder(buyer.id, [kept.id, lost.id, other.id]);
    const order = (await handle.result()) as { status: string; id: string };
    expect(order.status).toBe('partially_completed');

    // The debit drew 30 promotional + 30 paid; the refund of the withdrawn item (25) goes back
    // in the source grants' burn-down order: to the promotion first.
    expect(await sharesUnder(flows, `${handle.workflowId}:debit`)).toEqual([
      [promo, -30, 'draw'],
      [paid, -30, 'draw'],
    ]);
    expect(await sharesUnder(flows, `${handle.workflowId}:refund`)).toEqual([
      [promo, 25, 'return'],
    ]);

    // Sellers are paid into paid grants of source sale.
    const [sale] = await grantsOf(flows, kept.sellerId);
    expect(sale).toMatchObject({ category: 'paid', source: 'sale', credits: '20' });

    // A goodwill refund of the 20-credit item: 5 left of the promotion's draw, then 15 paid.
    const refundId = `rfd_${uniqueId('g').replace(/-/g, '').slice(0, 32)}`;
    const env = new MockActivityEnvironment(
      { taskQueue: flows.taskQueue },
      { logger: new DefaultLogger('ERROR') },
    );
    await env.run(() =>
      flows.real.creditPurchaseRefund({
        refundId,
        workflowId: `refund-${refundId}`,
        customerId: buyer.id,
        credits: 20,
        verificationId: null,
        orderId: order.id,
        itemId: kept.id,
      }),
    );
    expect(await sharesUnder(flows, `goodwill:order:${order.id}:item:${kept.id}`)).toEqual([
      [promo, 5, 'return'],
      [paid, 15, 'return'],
    ]);
    expect(await remaining(flows, [promo, paid])).toEqual({ [promo]: 30, [paid]: 85 });
    // Per grant, what came back never exceeds what the order drew from it.
    const back = await flows.db.sql<{ grant_id: string; returned: string }[]>`
      select gp.grant_id, sum(gp.amount) as returned from grant_postings gp
      join entries e on e.id = gp.returns_entry_id
      where e.idempotency_key = ${`${handle.workflowId}:debit`} and gp.kind = 'return'
      group by gp.grant_id`;
    expect(Object.fromEntries(back.map((r) => [r.grant_id, Number(r.returned)]))).toEqual({
      [promo]: 30,
      [paid]: 15,
    });
  });
});
