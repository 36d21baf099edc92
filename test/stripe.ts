// Stripe for tests: a recording double in front of stripe-mock, and signed webhook deliveries.
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { inject } from 'vitest';
import {
  checkoutMetadata,
  createStripeGateway,
  type CheckoutSessionInfo,
  type CheckoutSessionRequest,
  type StripeGateway,
} from '../src/stripe/gateway.js';

export const TEST_WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('hex')}`;
export const TEST_STRIPE_KEY = 'sk_test_creditflowtests';

const stripe = new Stripe(TEST_STRIPE_KEY);

export interface RecordedSession {
  id: string;
  url: string | null;
  status: 'open' | 'complete' | 'expired';
  paymentStatus: 'paid' | 'unpaid';
  paymentIntentId: string;
  request: CheckoutSessionRequest;
  expireCalls: number;
}

/**
 * Real calls to stripe-mock (which validates every parameter), plus the memory stripe-mock does
 * not have: a session's metadata, status and payment intent, as real Stripe would keep them.
 */
export class RecordingStripeGateway implements StripeGateway {
  readonly sessions = new Map<string, RecordedSession>();
  private readonly byKey = new Map<string, RecordedSession>();
  private readonly real: StripeGateway;
  createCalls = 0;
  /** Runs after the session exists and before the activity returns (e.g. to pay "too early"). */
  afterCreate: ((session: RecordedSession) => Promise<void>) | undefined;

  constructor(apiBase: string = inject('stripeApiBase')) {
    this.real = createStripeGateway({
      secretKey: TEST_STRIPE_KEY,
      apiBase,
      successUrl: 'https://example.test/success',
      cancelUrl: 'https://example.test/cancel',
    });
  }

  async createCheckoutSession(request: CheckoutSessionRequest): Promise<CheckoutSessionInfo> {
    this.createCalls++;
    const known = this.byKey.get(request.idempotencyKey);
    if (known) return this.info(known); // as Stripe does for a repeated idempotency key
    const created = await this.real.createCheckoutSession(request);
    const session: RecordedSession = {
      id: created.id,
      url: created.url,
      status: 'open',
      paymentStatus: 'unpaid',
      // stripe-mock answers every session with the same fixture payment intent; Stripe does not.
      paymentIntentId: `pi_test_${randomBytes(12).toString('hex')}`,
      request,
      expireCalls: 0,
    };
    this.byKey.set(request.idempotencyKey, session);
    this.sessions.set(request.paymentId, session);
    if (this.afterCreate) await this.afterCreate(session);
    return this.info(session);
  }

  async expireCheckoutSession(sessionId: string, idempotencyKey: string) {
    const session = [...this.sessions.values()].find((s) => s.id === sessionId);
    await this.real.expireCheckoutSession(sessionId, idempotencyKey);
    if (!session) throw new Error(`unknown session ${sessionId}`);
    session.expireCalls++;
    if (session.status === 'open') session.status = 'expired';
    return this.info(session);
  }

  session(paymentId: string): RecordedSession {
    const session = this.sessions.get(paymentId);
    if (!session) throw new Error(`no session recorded for ${paymentId}`);
    return session;
  }

  private info(session: RecordedSession): CheckoutSessionInfo {
    return {
      id: session.id,
      url: session.url,
      status: session.status,
      paymentStatus: session.paymentStatus,
      paymentIntentId: session.status === 'open' ? null : session.paymentIntentId,
    };
  }
}

/** A Checkout Session object as Stripe puts it in an event. */
export function sessionObject(
  session: RecordedSession,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const { request } = session;
  return {
    id: session.id,
    object: 'checkout.session',
    mode: 'payment',
    client_reference_id: request.paymentId,
    metadata: checkoutMetadata(request),
    amount_total: request.amount,
    currency: request.currency,
    payment_intent: session.paymentIntentId,
    status: 'complete',
    payment_status: 'paid',
    expires_at: request.expiresAt,
    url: null,
    ...overrides,
  };
}

/** A Stripe event envelope around an object. */
export function stripeEvent(type: string, object: Record<string, unknown>, id?: string) {
  return {
    id: id ?? `evt_test_${randomBytes(12).toString('hex')}`,
    object: 'event',
    api_version: '2025-10-29.clover',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  };
}

/** The Stripe-Signature header for a body, by stripe-node's own test helper. */
export function signatureFor(
  body: string,
  options: { secret?: string; timestamp?: number } = {},
): string {
  return stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: options.secret ?? TEST_WEBHOOK_SECRET,
    ...(options.timestamp !== undefined ? { timestamp: options.timestamp } : {}),
  });
}

/** RequestInit for POST /webhooks/stripe with a signed body. */
export function webhookRequest(
  event: unknown,
  options: { secret?: string; timestamp?: number; signature?: string | null } = {},
): RequestInit {
  const body = typeof event === 'string' ? event : JSON.stringify(event);
  const signature =
    options.signature === undefined ? signatureFor(body, options) : options.signature;
  return {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(signature === null ? {} : { 'stripe-signature': signature }),
    },
    body,
  };
}
