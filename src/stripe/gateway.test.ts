// The real Stripe gateway over HTTP: against stripe-mock (Stripe's spec checks every parameter),
// and against the stateful Stripe double for what stripe-mock cannot answer (a session that is
// no longer open, a repeated idempotency key, an outage).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TEST_STRIPE_KEY, startStripeDouble, type StripeDouble } from '../../test/stripe.js';
import {
  StripeRequestRefused,
  createStripeGateway,
  type CheckoutSessionRequest,
  type StripeGateway,
} from './gateway.js';

let stripe: StripeDouble;

beforeAll(async () => {
  stripe = await startStripeDouble();
});

afterAll(async () => {
  await stripe?.close();
});

function sessionRequest(overrides: Partial<CheckoutSessionRequest> = {}): CheckoutSessionRequest {
  const paymentId = `pay_${randomUUID().replaceAll('-', '')}`;
  return {
    paymentId,
    workflowId: `checkout-${paymentId}`,
    customerId: randomUUID(),
    pack: 'small',
    credits: 100,
    amount: 500,
    currency: 'eur',
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
    idempotencyKey: `checkout-${paymentId}:create-session`,
    ...overrides,
  };
}

/** The requests the double received for one session, in order. */
const requestsFor = (sessionId: string) =>
  stripe.requests.filter((r) => r.path.startsWith(`/v1/checkout/sessions/${sessionId}`));

const refusal = async (promise: Promise<unknown>) => {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StripeRequestRefused);
  return err as StripeRequestRefused;
};

describe('Stripe gateway against stripe-mock', () => {
  let gateway: StripeGateway;
  beforeAll(() => {
    gateway = createStripeGateway({
      secretKey: TEST_STRIPE_KEY,
      apiBase: inject('stripeApiBase'),
      successUrl: 'https://example.test/success',
      cancelUrl: 'https://example.test/cancel',
    });
  });

  it('creates a Checkout Session with parameters Stripe accepts', async () => {
    const session = await gateway.createCheckoutSession(sessionRequest());
    expect(session.id).toMatch(/^cs_/);
    expect(session.url).toMatch(/^https:\/\//);
    expect(session.status).toBe('open');
  });

  it('turns parameters Stripe refuses into a final refusal, not a retry', async () => {
    const err = await refusal(gateway.createCheckoutSession(sessionRequest({ amount: 1.5 })));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toMatch(/unit_amount/);
  });

  it('creates a session that keeps the card for off-session use, new or existing customer', async () => {
    const created = await gateway.createCheckoutSession(sessionRequest({ saveCard: true }));
    expect(created.id).toMatch(/^cs_/);
    const reused = await gateway.createCheckoutSession(
      sessionRequest({ saveCard: true, stripeCustomerId: 'cus_gateway_test' }),
    );
    expect(reused.id).toMatch(/^cs_/);
  });

  it('reads the card and customer of a payment intent with a request Stripe accepts', async () => {
    const card = await gateway.retrievePaymentIntentCard('pi_gateway_test');
    expect(card.paymentIntentId).toMatch(/^pi_/);
    expect(typeof card.status).toBe('string');
  });

  it('charges a saved card off-session with parameters Stripe accepts', async () => {
    const result = await gateway.chargeSavedCard({
      stripeCustomerId: 'cus_gateway_test',
      paymentMethodId: 'pm_gateway_test',
      amount: 500,
      currency: 'eur',
      description: 'Auto top-up: 100 credits (small pack)',
      metadata: { autoTopupChargeId: 'auto-topup:x:1' },
      idempotencyKey: `auto-topup:${randomUUID()}:1`,
    });
    // stripe-mock answers from its fixture (an intent still wanting a payment method).
    expect(result.paymentIntentId).toMatch(/^pi_/);
  });

  it('expires a session with a request Stripe accepts', async () => {
    const session = await gateway.expireCheckoutSession('cs_test_gateway', randomUUID());
    // stripe-mock answers every expire from its fixture; the gateway reports what Stripe said.
    expect(session.id).toMatch(/^cs_/);
    expect(session.status).toBe('open');
  });
});

describe('Stripe gateway against the stateful double', () => {
  it('charges a saved card once per key; a decline and authentication required are outcomes, not errors', async () => {
    const card = stripe.saveCard();
    const charge = (key: string) =>
      stripe.gateway.chargeSavedCard({
        stripeCustomerId: card.stripeCustomerId,
        paymentMethodId: card.paymentMethodId,
        amount: 500,
        currency: 'eur',
        description: 'Auto top-up',
        metadata: {},
        idempotencyKey: key,
      });
    const key = `auto-topup:${randomUUID()}:1`;
    const first = await charge(key);
    expect(first).toMatchObject({ outcome: 'succeeded', status: 'succeeded' });
    expect(await charge(key)).toEqual(first);

    stripe.offSessionScript.push('card_declined', 'authentication_required');
    expect(await charge(`auto-topup:${randomUUID()}:2`)).toMatchObject({
      outcome: 'declined',
      code: 'card_declined',
      declineCode: 'generic_decline',
      status: 'requires_payment_method',
    });
    expect(await charge(`auto-topup:${randomUUID()}:3`)).toMatchObject({
      outcome: 'requires_action',
      code: 'authentication_required',
      status: 'requires_action',
    });
    const err = await refusal(
      stripe.gateway.chargeSavedCard({
        stripeCustomerId: card.stripeCustomerId,
        paymentMethodId: 'pm_removed',
        amount: 500,
        currency: 'eur',
        description: 'Auto top-up',
        metadata: {},
        idempotencyKey: randomUUID(),
      }),
    );
    expect(err.code).toBe('resource_missing');
  });

  it('creates a session once per idempotency key and sends the key it was given', async () => {
    const request = sessionRequest();
    const first = await stripe.gateway.createCheckoutSession(request);
    const again = await stripe.gateway.createCheckoutSession(request);
    expect(again).toEqual(first);
    expect(first).toMatchObject({ status: 'open', paymentStatus: 'unpaid', paymentIntentId: null });
    expect(stripe.session(request.paymentId).id).toBe(first.id);
    const creates = stripe.requests.filter((r) => r.body.includes(request.paymentId));
    expect(creates.map((r) => [r.method, r.idempotencyKey, r.status])).toEqual([
      ['POST', request.idempotencyKey, 200],
      ['POST', request.idempotencyKey, 200],
    ]);
  });

  it('refuses for good a repeated key with other parameters', async () => {
    const request = sessionRequest();
    await stripe.gateway.createCheckoutSession(request);
    const err = await refusal(stripe.gateway.createCheckoutSession({ ...request, amount: 900 }));
    expect(err.code).toBe('idempotency_error');
  });

  it('creates one session through a Stripe outage, every attempt under the same key', async () => {
    const request = sessionRequest();
    stripe.failNext = { path: /^\/v1\/checkout\/sessions$/, times: 1 };
    // The client retries by itself, or the activity's retry calls again: either way, one key.
    const session = await stripe.gateway
      .createCheckoutSession(request)
      .catch(() => stripe.gateway.createCheckoutSession(request));
    stripe.failNext = undefined;
    expect(stripe.session(request.paymentId).id).toBe(session.id);
    const attempts = stripe.requests.filter(
      (r) => r.idempotencyKey === request.idempotencyKey || r.body.includes(request.paymentId),
    );
    expect(attempts.map((r) => r.status)).toEqual([500, 200]);
    expect(attempts.every((r) => r.idempotencyKey === request.idempotencyKey)).toBe(true);
  });

  it('expires an open session', async () => {
    const request = sessionRequest();
    const created = await stripe.gateway.createCheckoutSession(request);
    const key = `${request.workflowId}:expire-session`;
    const expired = await stripe.gateway.expireCheckoutSession(created.id, key);
    expect(expired).toMatchObject({ id: created.id, status: 'expired', paymentStatus: 'unpaid' });
    expect(stripe.session(request.paymentId).status).toBe('expired');
    expect(requestsFor(created.id).map((r) => [r.method, r.idempotencyKey, r.status])).toEqual([
      ['POST', key, 200],
    ]);
  });

  it('reports a session paid before the expiry reached Stripe: expire refused, then retrieved', async () => {
    const request = sessionRequest();
    const created = await stripe.gateway.createCheckoutSession(request);
    const recorded = stripe.session(request.paymentId);
    recorded.status = 'complete';
    recorded.paymentStatus = 'paid';
    const key = `${request.workflowId}:expire-session`;

    const session = await stripe.gateway.expireCheckoutSession(created.id, key);
    expect(session).toEqual({
      id: created.id,
      url: null,
      status: 'complete',
      paymentStatus: 'paid',
      paymentIntentId: recorded.paymentIntentId,
    });
    // The refusal really happened and the answer came from the retrieve; the POST carried its key.
    expect(requestsFor(created.id).map((r) => [r.method, r.idempotencyKey, r.status])).toEqual([
      ['POST', key, 400],
      ['GET', undefined, 200],
    ]);
  });

  it('reports a session that had already expired as expired', async () => {
    const request = sessionRequest();
    const created = await stripe.gateway.createCheckoutSession(request);
    stripe.session(request.paymentId).status = 'expired';
    const session = await stripe.gateway.expireCheckoutSession(created.id, randomUUID());
    expect(session).toMatchObject({ id: created.id, status: 'expired', paymentStatus: 'unpaid' });
    expect(requestsFor(created.id).map((r) => [r.method, r.status])).toEqual([
      ['POST', 400],
      ['GET', 200],
    ]);
  });

  it('refuses for good to expire a session Stripe does not know', async () => {
    const err = await refusal(
      stripe.gateway.expireCheckoutSession('cs_test_unknown_session', randomUUID()),
    );
    expect(err.code).toBe('resource_missing');
  });
});

describe('Stripe gateway: refunds, disputes and lists', () => {
  it('sends a refund request stripe-mock accepts, with the key and our ids in metadata', async () => {
    const gateway = createStripeGateway({
      secretKey: TEST_STRIPE_KEY,
      apiBase: inject('stripeApiBase'),
      successUrl: 'https://example.test/success',
      cancelUrl: 'https://example.test/cancel',
    });
    const refund = await gateway.createRefund({
      paymentIntentId: 'pi_123',
      amount: 250,
      refundId: 'rfd_1',
      workflowId: 'refund-rfd_1',
      idempotencyKey: `refund-rfd_1:stripe-refund:${randomUUID()}`,
    });
    expect(refund.id).toMatch(/^re_/);
    const page = await gateway.listDisputes({ limit: 3 });
    expect(Array.isArray(page.data)).toBe(true);
  });

  it('refunds once per key, never beyond what was paid, and lists newest first in pages', async () => {
    const request = sessionRequest({ amount: 1000 });
    await stripe.gateway.createCheckoutSession(request);
    expect(stripe.pay(request.paymentId)).toBe(true);
    const intent = stripe.session(request.paymentId).paymentIntentId;
    const ask = (amount: number, key: string) =>
      stripe.gateway.createRefund({
        paymentIntentId: intent,
        amount,
        refundId: 'rfd_x',
        workflowId: 'refund-rfd_x',
        idempotencyKey: key,
      });
    const first = await ask(600, `${intent}:a`);
    const again = await ask(600, `${intent}:a`);
    expect(again.id).toBe(first.id);
    expect(first).toMatchObject({ amount: 600, status: 'succeeded', paymentIntentId: intent });
    expect(first.metadata).toEqual({ refundId: 'rfd_x', workflowId: 'refund-rfd_x' });
    const tooMuch = await refusal(ask(500, `${intent}:b`));
    expect(tooMuch.code).toBe('amount_too_large');
    const dashboard = stripe.refundAtStripe(request.paymentId, 400);

    const firstPage = await stripe.gateway.listRefunds({ paymentIntentId: intent, limit: 1 });
    expect(firstPage.data.map((r) => r.id)).toEqual([dashboard.id]);
    expect(firstPage.hasMore).toBe(true);
    const second = await stripe.gateway.listRefunds({
      paymentIntentId: intent,
      limit: 1,
      startingAfter: firstPage.nextCursor,
    });
    expect(second.data.map((r) => r.id)).toEqual([first.id]);
    expect(second.hasMore).toBe(false);

    const dispute = stripe.openDispute(request.paymentId, 1000);
    const disputes = await stripe.gateway.listDisputes({ createdFrom: dispute.created });
    expect(disputes.data.map((d) => d.id)).toContain(dispute.id);
    const intents = await stripe.gateway.listPaymentIntents({ createdFrom: dispute.created - 60 });
    expect(intents.data.find((i) => i.id === intent)).toMatchObject({
      status: 'succeeded',
      amountReceived: 1000,
    });
    const sessions = await stripe.gateway.listCheckoutSessions({ limit: 100 });
    expect(sessions.data.find((s) => s.clientReferenceId === request.paymentId)).toMatchObject({
      paymentStatus: 'paid',
      amountTotal: 1000,
      metadata: expect.objectContaining({ paymentId: request.paymentId }),
    });
  });
});
