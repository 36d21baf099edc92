// An operator cancels a checkout that is waiting for the customer: the session is expired at
// Stripe (the compensation runs whole, cancel or not), and a payment Stripe took just before is
// still credited.
import { recordHistory } from './workflow-bench.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from './checkout-harness.js';

let bench: CheckoutBench;

beforeAll(async () => {
  bench = await startCheckoutBench('checkout-cancel');
});

afterAll(async () => {
  await bench?.close();
});

async function waitingCheckout() {
  const customer = await bench.customer();
  const res = await bench.buy(customer.token, 'small');
  expect(res.status).toBe(202);
  const started = (await res.json()) as CheckoutStarted;
  return { customer, started, session: bench.stripe.session(started.id) };
}

async function paymentStatus(paymentId: string) {
  const [row] = await bench.db.sql<{ status: string }[]>`
    select status from payments where id = ${paymentId}`;
  return row?.status;
}

describe('operator cancel of a waiting checkout', () => {
  it('expires the Stripe session and the payment', async () => {
    const { started, session } = await waitingCheckout();
    const handle = bench.temporal.workflow.getHandle(started.workflowId);
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();

    expect(session.expireCalls).toBeGreaterThanOrEqual(1);
    expect(session.status).toBe('expired');
    expect(await paymentStatus(started.id)).toBe('expired');
    await recordHistory(handle, 'checkout-operator-cancelled');
  });

  it('credits a payment Stripe took just before the cancel, whose webhook is not here yet', async () => {
    const { customer, started, session } = await waitingCheckout();
    session.status = 'complete';
    session.paymentStatus = 'paid';
    const handle = bench.temporal.workflow.getHandle(started.workflowId);
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();

    expect(session.expireCalls).toBeGreaterThanOrEqual(1);
    expect(await paymentStatus(started.id)).toBe('credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBeGreaterThan(0);
    await recordHistory(handle, 'checkout-paid-before-cancel');
  });

  it('expires a session that was being created when the cancel arrived', async () => {
    const customer = await bench.customer();
    let cancelled: Promise<unknown> | undefined;
    // The cancel lands while the session-creating activity is still running.
    bench.stripe.afterCreate = async (session) => {
      bench.stripe.afterCreate = undefined;
      const handle = bench.temporal.workflow.getHandle(session.request.workflowId);
      await handle.cancel();
      cancelled = handle.result().catch((err: unknown) => err);
      await cancelled;
    };
    const res = await bench.buy(customer.token, 'small');
    const started = (await res.json()) as CheckoutStarted;
    await expect.poll(() => cancelled).toBeDefined();
    await cancelled;

    const session = bench.stripe.session(started.id);
    expect(session.expireCalls).toBeGreaterThanOrEqual(1);
    expect(session.status).toBe('expired');
    expect(await paymentStatus(started.id)).toBe('expired');
    await recordHistory(
      bench.temporal.workflow.getHandle(started.workflowId),
      'checkout-cancelled-while-opening',
    );
  });
});
