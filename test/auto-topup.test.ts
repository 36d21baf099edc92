// Auto top-up end to end: a saveCard checkout keeps the card; a crossing below the threshold
// (even 20 debits crossing together) charges once off-session and credits a paid grant; the
// trigger re-arms; the monthly cap; a declined or authentication-required card pauses, records the
// failure and tells the customer, and is never retried; a PUT un-pauses. Real Temporal and
// PostgreSQL; Stripe through the stateful double (declines come from it, stripe-mock cannot).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { createAutoTopupDispatcher } from '../src/credits/auto-topup-dispatcher.js';
import { toDate } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import { workflowIds } from '../src/shared.js';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from './checkout-harness.js';
import {
  connectTestClient,
  deliveredNotifications,
  eventually,
  fund,
  jsonRequest,
  silentLogger,
  startTestWorker,
  uniqueId,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';
import { sessionObject, stripeEvent, type SavedCard } from './stripe.js';

let bench: CheckoutBench;
let ledger: Ledger;
let stopAutoTopupWorker: () => Promise<void>;

beforeAll(async () => {
  // The checkout bench's own worker does not run the auto top-up dispatcher; a second worker on
  // the same task queue does, as src/worker.ts runs both.
  bench = await startCheckoutBench('auto-topup');
  ledger = createLedger(bench.db.sql);
  const temporal = await connectTestClient();
  const worker = await startTestWorker(
    bench.db,
    bench.taskQueue,
    { stripe: bench.stripe.gateway },
    {},
    { autoTopup: { temporal } },
  );
  stopAutoTopupWorker = async () => {
    await worker.stop();
    await temporal.connection.close();
  };
});

afterAll(async () => {
  await stopAutoTopupWorker?.();
  // Closes the bench: every paid checkout credited once, and the ledger checker clean.
  await bench?.close();
});

interface State {
  enabled: boolean;
  threshold: number | null;
  pack: string | null;
  monthlyCap: number | null;
  paused: boolean;
  pauseReason: string | null;
  lastCharge: { id: string; status: string; credits: number; amount: number } | null;
  chargesThisMonth: number;
  lastFailure: { chargeId: string; status: string; code: string } | null;
  savedCard: { brand: string | null; last4: string | null } | null;
}

interface ChargeRow {
  id: string;
  crossing: string;
  status: string;
  credits: string;
  payment_intent_id: string | null;
  failure_code: string | null;
  grant_id: string | null;
}

/** A customer whose card is saved at the double and in saved_payment_methods. */
async function customerWithCard(balance: number) {
  const customer = await bench.customer();
  const card = bench.stripe.saveCard();
  await bench.db.sql`
    insert into saved_payment_methods
      (customer_id, stripe_customer_id, payment_method_id, card_brand, card_last4)
    values (${customer.id}, ${card.stripeCustomerId}, ${card.paymentMethodId}, ${card.brand},
            ${card.last4})`;
  if (balance > 0) await fund(ledger, customer.id, balance);
  return { ...customer, card };
}

const put = (token: string, body: unknown) =>
  bench.app.request('/v1/wallet/auto-topup', jsonRequest('PUT', body, token));

async function getState(token: string): Promise<State> {
  const res = await bench.app.request('/v1/wallet/auto-topup', {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as State;
}

async function enable(token: string, settings: Partial<Record<string, unknown>> = {}) {
  const res = await put(token, {
    enabled: true,
    threshold: 500,
    pack: 'small',
    monthlyCap: 5,
    ...settings,
  });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as State;
}

/** Takes credits as a purchase would, through the real posting function. */
async function spend(customerId: string, amount: number) {
  return ledger.postEntry({
    idempotencyKey: uniqueId('test-spend'),
    type: 'test_spend',
    description: 'Test spend',
    lines: [
      { account: { wallet: customerId }, amount: -amount },
      { account: { system: 'revenue' }, amount },
    ],
  });
}

const charges = (customerId: string) =>
  bench.db.sql<ChargeRow[]>`
    select id, crossing, status, credits, payment_intent_id, failure_code, grant_id
    from auto_topup_charges where customer_id = ${customerId} order by crossing`;

/** Waits until the customer has no charge in flight, then lists them. */
async function settledCharges(customerId: string, count: number) {
  return eventually(
    async () => {
      const rows = await charges(customerId);
      const open = rows.some((r) => r.status === 'requested' || r.status === 'charging');
      return rows.length === count && !open ? rows : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

const chargesAtStripe = (card: SavedCard) =>
  bench.stripe.offSessionCharges.filter((c) => c.paymentMethodId === card.paymentMethodId);

/** Keeps the history of the customer's latest auto top-up run once it has ended. */
async function keepRun(customerId: string, name: string) {
  const handle = bench.temporal.workflow.getHandle(workflowIds.autoTopup(customerId));
  await handle.result();
  await keepHistory(bench.temporal, name, handle.workflowId);
}

const armed = async (customerId: string) => {
  const [row] = await bench.db.sql<{ armed: boolean; crossings: string }[]>`
    select armed, crossings from auto_topup_settings where customer_id = ${customerId}`;
  return row;
};

describe('saving a card', () => {
  it('a saveCard checkout asks Stripe to keep the card and stores it once credited', async () => {
    const customer = await bench.customer();
    const before = await put(customer.token, {
      enabled: true,
      threshold: 100,
      pack: 'small',
      monthlyCap: 2,
    });
    expect(before.status).toBe(409);
    expect(((await before.json()) as { error: { code: string } }).error.code).toBe(
      'no_saved_payment_method',
    );

    const res = await bench.app.request(
      '/v1/checkouts',
      jsonRequest('POST', { pack: 'small', saveCard: true }, customer.token),
    );
    expect(res.status).toBe(202);
    const started = (await res.json()) as CheckoutStarted;
    const session = bench.stripe.session(started.id);
    expect(session.saveCard).toBe(true);
    const create = bench.stripe.requests.find(
      (r) => r.path === '/v1/checkout/sessions' && r.body.includes(started.id),
    );
    expect(new URLSearchParams(create!.body).get('customer_creation')).toBe('always');

    expect(bench.stripe.pay(started.id)).toBe(true);
    const delivered = await bench.deliver(
      stripeEvent('checkout.session.completed', sessionObject(session)),
    );
    expect(delivered.status).toBe(200);
    await bench.waitFor(customer.token, started.id, 'credited');
    await bench.temporal.workflow.getHandle(started.workflowId).result();
    await keepHistory(bench.temporal, 'checkout-save-card', started.workflowId);
    const saved = await eventually(async () => {
      const [row] = await bench.db.sql`
        select stripe_customer_id, payment_method_id, payment_id, card_brand, card_last4
        from saved_payment_methods where customer_id = ${customer.id}`;
      return row;
    });
    expect(saved).toEqual({
      stripe_customer_id: session.stripeCustomerId,
      payment_method_id: session.paymentMethodId,
      payment_id: started.id,
      card_brand: 'visa',
      card_last4: '4242',
    });
    expect((await getState(customer.token)).savedCard).toEqual({ brand: 'visa', last4: '4242' });

    // A second saveCard checkout reuses the Stripe customer instead of creating another.
    const again = await bench.app.request(
      '/v1/checkouts',
      jsonRequest('POST', { pack: 'small', saveCard: true }, customer.token),
    );
    const second = (await again.json()) as CheckoutStarted;
    const form = new URLSearchParams(
      bench.stripe.requests.find(
        (r) => r.path === '/v1/checkout/sessions' && r.body.includes(second.id),
      )!.body,
    );
    expect(form.get('customer')).toBe(session.stripeCustomerId);
    expect(form.get('customer_creation')).toBeNull();
  });

  it('a checkout without saveCard keeps no card', async () => {
    const customer = await bench.customer();
    const res = await bench.buy(customer.token, 'small');
    const started = (await res.json()) as CheckoutStarted;
    const session = bench.stripe.session(started.id);
    expect(session.saveCard).toBe(false);
    bench.stripe.pay(started.id);
    await bench.deliver(stripeEvent('checkout.session.completed', sessionObject(session)));
    await bench.waitFor(customer.token, started.id, 'credited');
    const rows = await bench.db.sql`
      select 1 from saved_payment_methods where customer_id = ${customer.id}`;
    expect(rows).toHaveLength(0);
  });
});

describe('settings', () => {
  it('refuses bad settings with 4xx and writes nothing', async () => {
    const customer = await customerWithCard(0);
    const bad = [
      { enabled: true, threshold: 0, pack: 'small', monthlyCap: 1 },
      { enabled: true, threshold: 10, pack: 'small', monthlyCap: 0 },
      { enabled: true, threshold: 10, pack: 'small', monthlyCap: 1001 },
      { enabled: true, threshold: 1.5, pack: 'small', monthlyCap: 1 },
      { enabled: 'yes', threshold: 10, pack: 'small', monthlyCap: 1 },
      { enabled: true, threshold: 10, monthlyCap: 1 },
      { enabled: true, threshold: 10, pack: 'small', monthlyCap: 1, extra: 1 },
    ];
    for (const body of bad) {
      const res = await put(customer.token, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    const unknown = await put(customer.token, {
      enabled: true,
      threshold: 10,
      pack: 'gigantic',
      monthlyCap: 1,
    });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('unknown_pack');
    const rows = await bench.db.sql`
      select 1 from auto_topup_settings where customer_id = ${customer.id}
      union all select 1 from auto_topup_charges where customer_id = ${customer.id}`;
    expect(rows).toHaveLength(0);
    const state = await getState(customer.token);
    expect(state).toMatchObject({ enabled: false, threshold: null, lastCharge: null });
  });

  it('enabling while already below the threshold is a crossing: one charge', async () => {
    const customer = await customerWithCard(50);
    await enable(customer.token, { threshold: 100 });
    const [charge] = await settledCharges(customer.id, 1);
    expect(charge).toMatchObject({ status: 'succeeded', crossing: '1', credits: '100' });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(150);
    // Saving the same settings again above the threshold charges nothing more.
    await enable(customer.token, { threshold: 100 });
    expect(await charges(customer.id)).toHaveLength(1);
    expect(chargesAtStripe(customer.card)).toHaveLength(1);
  });
});

describe('charging on a crossing', () => {
  it('20 concurrent debits crossing together charge once; the trigger re-arms; the next crossing charges again', async () => {
    const customer = await customerWithCard(1000);
    await enable(customer.token, { threshold: 500, monthlyCap: 5 });
    expect(await charges(customer.id)).toHaveLength(0);

    const spent = await Promise.allSettled(
      Array.from({ length: 20 }, () => spend(customer.id, 30)),
    );
    expect(spent.filter((s) => s.status === 'fulfilled')).toHaveLength(20);
    // Both sides of the crossing happened: balances above and below the threshold after debits.
    const after = spent.map((s) =>
      s.status === 'fulfilled' ? s.value.lines.find((l) => 'wallet' in l.account)!.balanceAfter : 0,
    );
    expect(after.some((b) => b >= 500)).toBe(true);
    expect(after.some((b) => b < 500)).toBe(true);

    const [first] = await settledCharges(customer.id, 1);
    expect(first).toMatchObject({ crossing: '1', status: 'succeeded', credits: '100' });
    expect(first!.id).toBe(`auto-topup:${customer.id}:1`);
    await keepRun(customer.id, 'auto-topup-succeeded');
    // One off-session PaymentIntent, keyed by the charge id, for the pack's price.
    const atStripe = chargesAtStripe(customer.card);
    expect(atStripe).toHaveLength(1);
    expect(atStripe[0]).toMatchObject({
      amount: 500,
      currency: 'eur',
      idempotencyKey: first!.id,
      stripeCustomerId: customer.card.stripeCustomerId,
      status: 'succeeded',
    });
    expect(first!.payment_intent_id).toBe(atStripe[0]!.id);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(1000 - 600 + 100);
    const [grant] = await bench.db.sql`
      select category, source, credits from grants where id = ${first!.grant_id}`;
    expect(grant).toEqual({ category: 'paid', source: 'auto_topup', credits: '100' });
    // 500 is at the threshold again: re-armed.
    expect(await armed(customer.id)).toEqual({ armed: true, crossings: '1' });

    await spend(customer.id, 1);
    const both = await settledCharges(customer.id, 2);
    expect(both[1]).toMatchObject({ crossing: '2', status: 'succeeded' });
    expect(chargesAtStripe(customer.card)).toHaveLength(2);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(599);

    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.filter((n) => n.kind === 'auto_topup_succeeded')).toHaveLength(2);
    const state = await getState(customer.token);
    expect(state).toMatchObject({
      enabled: true,
      paused: false,
      chargesThisMonth: 2,
      lastCharge: { id: both[1]!.id, status: 'succeeded', credits: 100, amount: 500 },
      lastFailure: null,
      savedCard: { brand: 'visa', last4: '4242' },
    });
  });

  it('debits while below the threshold request nothing more', async () => {
    const customer = await customerWithCard(300);
    await enable(customer.token, { threshold: 500, pack: 'small', monthlyCap: 5 });
    // The PUT found 300 < 500: one charge, which brings 400, still below; not re-armed.
    await settledCharges(customer.id, 1);
    for (let i = 0; i < 5; i++) await spend(customer.id, 10);
    await new Promise((r) => setTimeout(r, 300));
    expect(await charges(customer.id)).toHaveLength(1);
    expect(await armed(customer.id)).toEqual({ armed: false, crossings: '1' });
  });

  it('the monthly cap: a crossing beyond it is capped, told, and charges nothing', async () => {
    const customer = await customerWithCard(600);
    await enable(customer.token, { threshold: 500, monthlyCap: 1 });
    await spend(customer.id, 200);
    await settledCharges(customer.id, 1);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(500);
    await spend(customer.id, 50);
    const rows = await settledCharges(customer.id, 2);
    expect(rows.map((r) => r.status)).toEqual(['succeeded', 'capped']);
    expect(rows[1]!.failure_code).toBe('monthly_cap_reached');
    await keepRun(customer.id, 'auto-topup-capped');
    expect(chargesAtStripe(customer.card)).toHaveLength(1);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(450);
    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.map((n) => n.kind)).toEqual(['auto_topup_succeeded', 'auto_topup_failed']);
    expect(told[1]!.data).toMatchObject({ reason: 'monthly_cap_reached' });
    expect(await getState(customer.token)).toMatchObject({ chargesThisMonth: 1, paused: false });
  });
});

describe('the dispatcher', () => {
  it('never loses a request: Temporal down leaves it requested, the next look starts the run', async () => {
    const customer = await bench.customer();
    const taskQueue = uniqueId('auto-topup-dispatch');
    const id = `auto-topup:${customer.id}:1`;
    await bench.db.sql`
      insert into auto_topup_charges (id, customer_id, crossing, pack, credits, amount, currency, task_queue)
      values (${id}, ${customer.id}, 1, 'small', 100, 500, 'eur', ${taskQueue})`;
    const starts: Array<{ workflowId: string; args: unknown }> = [];
    const client = (start: (options: { workflowId: string; args: unknown }) => Promise<void>) =>
      ({
        workflow: { start: (_type: string, options: never) => start(options) },
      }) as unknown as Client;
    const dispatcher = (temporal: Client) =>
      createAutoTopupDispatcher({
        sql: bench.db.sql,
        temporal,
        taskQueue,
        logger: silentLogger,
        settings: { pollIntervalMs: 50, retryAfterMs: 60_000, batchSize: 10 },
      });
    const row = async () => {
      const [r] = await bench.db.sql`
        select status, workflow_id from auto_topup_charges where id = ${id}`;
      return r;
    };

    const down = dispatcher(
      client(() => Promise.reject(new Error('14 UNAVAILABLE: Temporal is down'))),
    );
    await expect(down.runOnce()).rejects.toThrow(/UNAVAILABLE/);
    expect(await row()).toEqual({ status: 'requested', workflow_id: null });

    const up = dispatcher(
      client((options) => {
        starts.push({ workflowId: options.workflowId, args: options.args });
        return Promise.resolve();
      }),
    );
    expect(await up.runOnce()).toBe(1);
    expect(starts).toEqual([
      { workflowId: `auto-topup-${customer.id}`, args: [{ customerId: customer.id }] },
    ]);
    // Handed to its run, and not started again before retryAfterMs.
    expect(await row()).toEqual({ status: 'requested', workflow_id: `auto-topup-${customer.id}` });
    expect(await up.runOnce()).toBe(0);
    expect(starts).toHaveLength(1);
    await bench.db.sql`update auto_topup_charges set status = 'failed' where id = ${id}`;
  });
});

describe('expiring credits', () => {
  it('a pack whose credits expire: the grant carries the expiry and its expiry workflow starts', async () => {
    const customer = await customerWithCard(600);
    await enable(customer.token, { threshold: 500 });
    // Packs gain expiresInDays elsewhere; the settings keep whatever the pack said when saved.
    await bench.db.sql`
      update auto_topup_settings set pack_expires_in_days = 30 where customer_id = ${customer.id}`;
    await spend(customer.id, 200);
    const [charge] = await settledCharges(customer.id, 1);
    const [grant] = await bench.db.sql<{ expires_at: Date | string }[]>`
      select expires_at from grants where id = ${charge!.grant_id}`;
    const days = (toDate(grant!.expires_at).getTime() - Date.now()) / (24 * 60 * 60 * 1000);
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    // The charge row settles with the credit; the expiry workflow starts just after it.
    const watcher = await eventually(() =>
      bench.temporal.workflow.getHandle(`grant-${charge!.grant_id}`).describe(),
    );
    expect(watcher.type).toBe('grant');
  });
});

describe('a card that does not go through', () => {
  for (const scripted of ['card_declined', 'authentication_required'] as const) {
    it(`${scripted}: pauses, records the failure, tells the customer, never retries; a PUT un-pauses`, async () => {
      const customer = await customerWithCard(600);
      await enable(customer.token, { threshold: 500, monthlyCap: 5 });
      bench.stripe.offSessionScript.push(scripted);
      await spend(customer.id, 200);
      const [failed] = await settledCharges(customer.id, 1);
      const status = scripted === 'card_declined' ? 'declined' : 'requires_action';
      expect(failed).toMatchObject({ status, failure_code: scripted, grant_id: null });
      expect(failed!.payment_intent_id).toMatch(/^pi_/);
      expect(chargesAtStripe(customer.card)).toHaveLength(1);
      expect(await bench.ledger.walletBalance(customer.id)).toBe(400);
      await keepRun(customer.id, `auto-topup-${status.replace('_', '-')}`);

      const paused = await getState(customer.token);
      expect(paused).toMatchObject({
        paused: true,
        lastFailure: { chargeId: failed!.id, status, code: scripted },
        chargesThisMonth: 0,
      });
      expect(paused.pauseReason).toContain(scripted);
      const told = await deliveredNotifications(bench.db, customer.id);
      expect(told.map((n) => n.kind)).toEqual(['auto_topup_failed']);
      expect(told[0]!.data).toMatchObject({ chargeId: failed!.id, reason: scripted });

      // Paused: more debits, even across the threshold again, request nothing.
      await fund(ledger, customer.id, 200);
      await spend(customer.id, 250);
      await new Promise((r) => setTimeout(r, 300));
      expect(await charges(customer.id)).toHaveLength(1);
      expect(chargesAtStripe(customer.card)).toHaveLength(1);

      // Changing the settings un-pauses; the balance (350) is below, so it charges at once.
      const resumed = await enable(customer.token, { threshold: 500, monthlyCap: 5 });
      expect(resumed.paused).toBe(false);
      const rows = await settledCharges(customer.id, 2);
      expect(rows.map((r) => r.status)).toEqual([status, 'succeeded']);
      expect(await bench.ledger.walletBalance(customer.id)).toBe(450);
      expect(await getState(customer.token)).toMatchObject({
        paused: false,
        chargesThisMonth: 1,
        lastCharge: { id: rows[1]!.id, status: 'succeeded' },
        lastFailure: { chargeId: failed!.id, status },
      });
    });
  }

  it('a transient Stripe outage is retried with the same key and charges once', async () => {
    const customer = await customerWithCard(600);
    await enable(customer.token, { threshold: 500, monthlyCap: 5 });
    bench.stripe.failNext = { path: /^\/v1\/payment_intents$/, times: 2 };
    await spend(customer.id, 200);
    const [charge] = await settledCharges(customer.id, 1);
    expect(charge!.status).toBe('succeeded');
    const attempts = bench.stripe.requests.filter(
      (r) => r.path === '/v1/payment_intents' && r.idempotencyKey === charge!.id,
    );
    expect(attempts.map((r) => r.status)).toEqual([500, 500, 200]);
    expect(chargesAtStripe(customer.card)).toHaveLength(1);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(500);
  });
});
