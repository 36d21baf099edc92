// A stateful Stripe double in front of stripe-mock, reached by the service's real gateway over
// HTTP, and Stripe events as Stripe signs them: the tests and the chaos suite play Stripe with it.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import {
  checkoutMetadata,
  createStripeGateway,
  type CheckoutSessionRequest,
  type StripeGateway,
} from '../stripe/gateway.js';

/** The secret key the double's own gateway uses (the double accepts any). */
export const TEST_STRIPE_KEY = 'sk_test_creditflowtests';

const stripe = new Stripe(TEST_STRIPE_KEY);

export interface RecordedSession {
  id: string;
  url: string | null;
  status: 'open' | 'complete' | 'expired';
  paymentStatus: 'paid' | 'unpaid';
  paymentIntentId: string;
  request: CheckoutSessionRequest;
  /** Unix seconds. */
  created: number;
  /** Expire requests that reached this session (refused ones included). */
  expireCalls: number;
  /** The session keeps the card for off-session use (setup_future_usage). */
  saveCard: boolean;
  /** The Stripe customer the session names, or creates when the customer pays. */
  stripeCustomerId: string | null;
  /** The card the customer paid with, once paid. */
  paymentMethodId: string | null;
}

/** A card saved at the double's Stripe: a payment method attached to a customer. */
export interface SavedCard {
  paymentMethodId: string;
  stripeCustomerId: string;
  brand: string;
  last4: string;
}

/** What the double answers an off-session charge with (scripted by a test). */
export type OffSessionOutcome = 'succeeded' | 'card_declined' | 'authentication_required';

/** An off-session payment intent the double created (auto top-up). */
export interface RecordedOffSessionCharge {
  id: string;
  stripeCustomerId: string;
  paymentMethodId: string;
  amount: number;
  currency: string;
  metadata: Record<string, string>;
  idempotencyKey: string | undefined;
  status: 'succeeded' | 'requires_payment_method' | 'requires_action';
  outcome: OffSessionOutcome;
  created: number;
}

/** One HTTP request as the double received it. */
/** A refund the double holds: made through the API (ours) or "in the Dashboard" by a test. */
export interface RecordedRefund {
  id: string;
  paymentIntentId: string;
  chargeId: string;
  amount: number;
  currency: string;
  status: 'pending' | 'succeeded' | 'failed' | 'canceled';
  metadata: Record<string, string>;
  created: number;
}

export interface RecordedDispute {
  id: string;
  paymentIntentId: string;
  chargeId: string;
  amount: number;
  currency: string;
  status: 'needs_response' | 'under_review' | 'won' | 'lost';
  reason: string;
  created: number;
}

export interface StripeRequest {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  body: string;
  /** The status the double answered with. */
  status: number;
}

interface StoredAnswer {
  body: string;
  status: number;
  object: unknown;
}

/**
 * A stateful Stripe double: an HTTP server speaking Stripe's Checkout Sessions API, which the
 * service's real gateway (`createStripeGateway`, stripe-node inside) talks to. stripe-mock is
 * stateless (it answers every expire with an open session and every create with a fixture id),
 * so every POST is first sent to stripe-mock, which validates its parameters against Stripe's
 * OpenAPI spec, and the double then answers from the memory real Stripe keeps: a session's
 * metadata, status and payment intent; "only open sessions can be expired"; the first answer
 * replayed for a repeated idempotency key.
 */
export class StripeDouble {
  /** By payment id. */
  readonly sessions = new Map<string, RecordedSession>();
  readonly requests: StripeRequest[] = [];
  /** The service's real gateway, pointed at this double. */
  readonly gateway: StripeGateway;
  createCalls = 0;
  /** Runs after the session exists and before Stripe answers (e.g. to pay "too early"). */
  afterCreate: ((session: RecordedSession) => Promise<void>) | undefined;
  /**
   * Answers the next requests on a path with an error before touching anything: a 500 (a Stripe
   * outage) unless another status and error type are given (e.g. 400 invalid_request_error).
   */
  failNext: { path: RegExp; times: number; status?: number; type?: string } | undefined;
  /** Every refund, oldest first. */
  readonly refunds: RecordedRefund[] = [];
  /** Every dispute, oldest first. */
  readonly disputes: RecordedDispute[] = [];
  /**
   * Refunds created through the API from now on end in this status (a card that cannot take a
   * refund fails asynchronously at Stripe); `succeeded` by default.
   */
  refundOutcome: RecordedRefund['status'] = 'succeeded';
  /** Saved cards by payment method id (from paid saveCard sessions, or `saveCard`). */
  readonly cards = new Map<string, SavedCard>();
  /** Every off-session charge that reached the double (declined ones too), oldest first. */
  readonly offSessionCharges: RecordedOffSessionCharge[] = [];
  /**
   * How the next off-session charges end, one entry per charge (declines, authentication
   * required); `succeeded` once the script is used up.
   */
  readonly offSessionScript: OffSessionOutcome[] = [];
  private readonly byId = new Map<string, RecordedSession>();
  private readonly answers = new Map<string, StoredAnswer>();

  private constructor(
    private readonly server: Server,
    readonly apiBase: string,
    private readonly stripeMockBase: string,
  ) {
    this.gateway = createStripeGateway({
      secretKey: TEST_STRIPE_KEY,
      apiBase,
      successUrl: 'https://example.test/success',
      cancelUrl: 'https://example.test/cancel',
    });
  }

  static async start(stripeMockBase: string): Promise<StripeDouble> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const double = new StripeDouble(server, `http://127.0.0.1:${port}`, stripeMockBase);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      double.handle(req, res).catch((err: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'api_error', message: String(err) } }));
      });
    });
    return double;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }

  session(paymentId: string): RecordedSession {
    const session = this.sessions.get(paymentId);
    if (!session) throw new Error(`no session recorded for ${paymentId}`);
    return session;
  }

  /**
   * The requests about one payment's session, in order, as [method, path, idempotency key, status]
   * with the session id shown as {id}.
   */
  callsFor(paymentId: string): Array<[string, string, string | undefined, number]> {
    const { id } = this.session(paymentId);
    return this.requests
      .filter((r) => r.path.includes(id) || r.body.includes(paymentId))
      .map((r) => [r.method, r.path.replace(id, '{id}'), r.idempotencyKey, r.status]);
  }

  /** The customer pays at Stripe: only an open session can be paid. True when it was. */
  pay(paymentId: string): boolean {
    const session = this.session(paymentId);
    if (session.status !== 'open') return false;
    session.status = 'complete';
    session.paymentStatus = 'paid';
    if (session.saveCard) {
      // Stripe attaches the card to the session's customer (created now when it named none).
      session.stripeCustomerId ??= `cus_test_${randomBytes(12).toString('hex')}`;
      session.paymentMethodId = this.saveCard(session.stripeCustomerId).paymentMethodId;
    }
    return true;
  }

  /** A card saved for a Stripe customer, as a paid saveCard session leaves one. */
  saveCard(
    stripeCustomerId = `cus_test_${randomBytes(12).toString('hex')}`,
    card: Partial<Pick<SavedCard, 'brand' | 'last4'>> = {},
  ): SavedCard {
    const saved: SavedCard = {
      paymentMethodId: `pm_test_${randomBytes(12).toString('hex')}`,
      stripeCustomerId,
      brand: card.brand ?? 'visa',
      last4: card.last4 ?? '4242',
    };
    this.cards.set(saved.paymentMethodId, saved);
    return saved;
  }

  /** A payment method as Stripe's API shows it. */
  paymentMethodObject(card: SavedCard) {
    return {
      id: card.paymentMethodId,
      object: 'payment_method',
      type: 'card',
      customer: card.stripeCustomerId,
      card: { brand: card.brand, last4: card.last4, exp_month: 12, exp_year: 2030 },
    };
  }

  /** An off-session payment intent as Stripe's API shows it. */
  offSessionObject(charge: RecordedOffSessionCharge, expand = false) {
    const card = this.cards.get(charge.paymentMethodId);
    return {
      id: charge.id,
      object: 'payment_intent',
      amount: charge.amount,
      amount_received: charge.status === 'succeeded' ? charge.amount : 0,
      currency: charge.currency,
      status: charge.status,
      customer: charge.stripeCustomerId,
      payment_method: expand && card ? this.paymentMethodObject(card) : charge.paymentMethodId,
      setup_future_usage: null,
      metadata: charge.metadata,
      latest_charge: charge.status === 'succeeded' ? chargeIdOf(charge.id) : null,
      created: charge.created,
    };
  }

  /**
   * Stripe took the money a second time for the same payment: another session (and intent) with
   * the same metadata, complete and paid. Returns it; `sessions` keeps pointing at the first.
   */
  addPaidSession(paymentId: string): RecordedSession {
    const first = this.session(paymentId);
    const id = `cs_test_${randomBytes(12).toString('hex')}`;
    const second: RecordedSession = {
      ...first,
      id,
      url: null,
      status: 'complete',
      paymentStatus: 'paid',
      paymentIntentId: `pi_test_${randomBytes(12).toString('hex')}`,
      request: { ...first.request },
      created: Math.floor(Date.now() / 1000),
      expireCalls: 0,
    };
    this.byId.set(id, second);
    return second;
  }

  /** The session paid with this payment intent, or undefined. */
  private sessionByIntent(paymentIntentId: string): RecordedSession | undefined {
    for (const session of this.byId.values()) {
      if (session.paymentIntentId === paymentIntentId) return session;
    }
    return undefined;
  }

  /** Money refunded so far on a payment intent (refunds that did not fail). */
  refunded(paymentIntentId: string): number {
    return this.refunds
      .filter((r) => r.paymentIntentId === paymentIntentId && r.status !== 'failed')
      .reduce((sum, r) => sum + r.amount, 0);
  }

  private addRefund(
    session: RecordedSession,
    amount: number,
    metadata: Record<string, string>,
    status: RecordedRefund['status'],
  ): RecordedRefund {
    const refund: RecordedRefund = {
      id: `re_test_${randomBytes(12).toString('hex')}`,
      paymentIntentId: session.paymentIntentId,
      chargeId: chargeIdOf(session.paymentIntentId),
      amount,
      currency: session.request.currency,
      status,
      metadata,
      created: Math.floor(Date.now() / 1000),
    };
    this.refunds.push(refund);
    return refund;
  }

  /**
   * Someone refunds at Stripe directly (the Dashboard): no metadata of ours. Returns the refund;
   * `chargeObject` then shows the charge as the charge.refunded event carries it.
   */
  refundAtStripe(paymentId: string, amount?: number): RecordedRefund {
    const session = this.session(paymentId);
    if (session.paymentStatus !== 'paid') throw new Error(`${paymentId} was never paid`);
    const left = session.request.amount - this.refunded(session.paymentIntentId);
    const value = amount ?? left;
    if (value <= 0 || value > left) throw new Error(`cannot refund ${value} of ${left} left`);
    return this.addRefund(session, value, {}, 'succeeded');
  }

  /** The charge of a paid session as Stripe puts it in charge.* events. */
  chargeObject(paymentId: string, overrides: Record<string, unknown> = {}) {
    const session = this.session(paymentId);
    const refunded = this.refunded(session.paymentIntentId);
    return {
      id: chargeIdOf(session.paymentIntentId),
      object: 'charge',
      amount: session.request.amount,
      amount_captured: session.request.amount,
      amount_refunded: refunded,
      currency: session.request.currency,
      paid: true,
      refunded: refunded >= session.request.amount,
      status: 'succeeded',
      payment_intent: session.paymentIntentId,
      metadata: {},
      created: session.created,
      ...overrides,
    };
  }

  /** The customer's bank opens a dispute on a paid session (the whole amount by default). */
  openDispute(paymentId: string, amount?: number, reason = 'fraudulent'): RecordedDispute {
    const session = this.session(paymentId);
    if (session.paymentStatus !== 'paid') throw new Error(`${paymentId} was never paid`);
    const dispute: RecordedDispute = {
      id: `dp_test_${randomBytes(12).toString('hex')}`,
      paymentIntentId: session.paymentIntentId,
      chargeId: chargeIdOf(session.paymentIntentId),
      amount: amount ?? session.request.amount,
      currency: session.request.currency,
      status: 'needs_response',
      reason,
      created: Math.floor(Date.now() / 1000),
    };
    this.disputes.push(dispute);
    return dispute;
  }

  closeDispute(disputeId: string, outcome: 'won' | 'lost'): RecordedDispute {
    const dispute = this.disputes.find((d) => d.id === disputeId);
    if (!dispute) throw new Error(`no dispute ${disputeId}`);
    dispute.status = outcome;
    return dispute;
  }

  /** A dispute as Stripe's API and charge.dispute.* events show it. */
  disputeObject(dispute: RecordedDispute, overrides: Record<string, unknown> = {}) {
    return {
      id: dispute.id,
      object: 'dispute',
      amount: dispute.amount,
      currency: dispute.currency,
      charge: dispute.chargeId,
      payment_intent: dispute.paymentIntentId,
      status: dispute.status,
      reason: dispute.reason,
      created: dispute.created,
      metadata: {},
      livemode: false,
      ...overrides,
    };
  }

  /** A refund as Stripe's API and events show it. */
  refundObject(refund: RecordedRefund) {
    return {
      id: refund.id,
      object: 'refund',
      amount: refund.amount,
      currency: refund.currency,
      charge: refund.chargeId,
      payment_intent: refund.paymentIntentId,
      status: refund.status,
      metadata: refund.metadata,
      created: refund.created,
    };
  }

  /** The payment intent of a session as Stripe's API shows it. */
  paymentIntentObject(session: RecordedSession) {
    const paid = session.paymentStatus === 'paid';
    return {
      id: session.paymentIntentId,
      object: 'payment_intent',
      amount: session.request.amount,
      amount_received: paid ? session.request.amount : 0,
      currency: session.request.currency,
      status: paid ? 'succeeded' : 'requires_payment_method',
      metadata: checkoutMetadata(session.request),
      latest_charge: paid ? chargeIdOf(session.paymentIntentId) : null,
      created: session.created,
      customer: session.stripeCustomerId,
      payment_method: session.paymentMethodId,
      setup_future_usage: session.saveCard ? 'off_session' : null,
    };
  }

  /** GET list endpoints: newest first, created[gte]/created[lt], starting_after, limit. */
  private list(
    url: URL,
    items: Array<{ id: string; created: number; object: Record<string, unknown> }>,
    path: string,
  ) {
    const q = url.searchParams;
    const gte = q.get('created[gte]');
    const lt = q.get('created[lt]');
    const limit = Math.min(Math.max(Number(q.get('limit') ?? 10) || 10, 1), 100);
    let rows = [...items]
      .reverse()
      .filter(
        (i) =>
          (gte === null || i.created >= Number(gte)) && (lt === null || i.created < Number(lt)),
      );
    const after = q.get('starting_after');
    if (after) {
      const at = rows.findIndex((i) => i.id === after);
      rows = at < 0 ? [] : rows.slice(at + 1);
    }
    const data = rows.slice(0, limit).map((i) => i.object);
    return { object: 'list', url: path, has_more: rows.length > limit, data };
  }

  /** The session object as Stripe's API returns it. */
  apiObject(session: RecordedSession, base: Record<string, unknown> = {}) {
    return {
      ...base,
      ...sessionObject(session, {
        status: session.status,
        payment_status: session.paymentStatus,
        // Real Stripe shows the payment intent only once the customer paid.
        payment_intent: session.status === 'open' ? null : session.paymentIntentId,
        url: session.status === 'open' ? session.url : null,
      }),
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '/').split('?')[0]!;
    const key = req.headers['idempotency-key'];
    const request: StripeRequest = {
      method: req.method ?? 'GET',
      path,
      idempotencyKey: typeof key === 'string' ? key : undefined,
      body,
      status: 0,
    };
    this.requests.push(request);
    const answer = (status: number, object: unknown) => {
      request.status = status;
      res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_double' });
      res.end(JSON.stringify(object));
    };

    if (this.failNext && this.failNext.path.test(path) && this.failNext.times > 0) {
      this.failNext.times--;
      const { status = 500, type = 'api_error' } = this.failNext;
      return answer(status, { error: { type, message: `Refused by the test (${type}).` } });
    }

    if (request.method === 'POST') {
      // A repeated key with the same parameters gets the first answer; other parameters are refused.
      const stored = request.idempotencyKey
        ? this.answers.get(`${path} ${request.idempotencyKey}`)
        : undefined;
      if (stored) {
        if (stored.body !== body) {
          return answer(400, {
            error: {
              type: 'idempotency_error',
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${request.idempotencyKey}' if you meant to execute a different request.`,
            },
          });
        }
        return answer(stored.status, stored.object);
      }
      const validated = await this.validate(req, path, body);
      if (validated.status !== 200) return answer(validated.status, validated.object);
      const [status, object] = await this.post(
        path,
        body,
        validated.object,
        request.idempotencyKey ?? '',
      );
      if (request.idempotencyKey) {
        this.answers.set(`${path} ${request.idempotencyKey}`, { body, status, object });
      }
      return answer(status, object);
    }

    if (request.method === 'GET') {
      const url = new URL(req.url ?? '/', 'http://double');
      const sessions = [...this.byId.values()];
      if (path === '/v1/checkout/sessions') {
        return answer(
          200,
          this.list(
            url,
            sessions.map((s) => ({ id: s.id, created: s.created, object: this.apiObject(s) })),
            path,
          ),
        );
      }
      if (path === '/v1/payment_intents') {
        // Stripe creates the intent when the customer starts paying; here, once paid.
        const paid = sessions.filter((s) => s.status !== 'open');
        return answer(
          200,
          this.list(
            url,
            paid.map((s) => ({
              id: s.paymentIntentId,
              created: s.created,
              object: this.paymentIntentObject(s),
            })),
            path,
          ),
        );
      }
      if (path === '/v1/refunds') {
        const intent = url.searchParams.get('payment_intent');
        const rows = this.refunds.filter((r) => !intent || r.paymentIntentId === intent);
        return answer(
          200,
          this.list(
            url,
            rows.map((r) => ({ id: r.id, created: r.created, object: this.refundObject(r) })),
            path,
          ),
        );
      }
      if (path === '/v1/disputes') {
        return answer(
          200,
          this.list(
            url,
            this.disputes.map((d) => ({
              id: d.id,
              created: d.created,
              object: this.disputeObject(d),
            })),
            path,
          ),
        );
      }
    }

    const intent = /^\/v1\/payment_intents\/([^/]+)$/.exec(path);
    if (request.method === 'GET' && intent) {
      const id = decodeURIComponent(intent[1]!);
      // stripe-node sends expand[0]=…; curl users write expand[]=….
      const expand = [...new URL(req.url ?? '/', 'http://double').searchParams].some(
        ([k, v]) => /^expand\[\d*\]$/.test(k) && v === 'payment_method',
      );
      const offSession = this.offSessionCharges.find((c) => c.id === id);
      if (offSession) return answer(200, this.offSessionObject(offSession, expand));
      const session = this.sessionByIntent(id);
      if (!session) return answer(404, missing(id, 'payment_intent'));
      const object: Record<string, unknown> = this.paymentIntentObject(session);
      const card = session.paymentMethodId ? this.cards.get(session.paymentMethodId) : undefined;
      if (expand && card) object['payment_method'] = this.paymentMethodObject(card);
      return answer(200, object);
    }

    const retrieve = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(path);
    if (request.method === 'GET' && retrieve) {
      const session = this.byId.get(decodeURIComponent(retrieve[1]!));
      if (!session) return answer(404, missing(retrieve[1]!, 'session'));
      return answer(200, this.apiObject(session));
    }
    return answer(404, {
      error: { type: 'invalid_request_error', message: `Unrecognized request URL (${path}).` },
    });
  }

  /** stripe-mock checks the request against Stripe's spec and gives a full object to start from. */
  private async validate(req: IncomingMessage, path: string, body: string) {
    const res = await fetch(`${this.stripeMockBase}${path}`, {
      method: 'POST',
      headers: {
        authorization: req.headers.authorization ?? '',
        'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded',
      },
      body,
    });
    return { status: res.status, object: (await res.json()) as Record<string, unknown> };
  }

  private async post(
    path: string,
    body: string,
    base: Record<string, unknown>,
    idempotencyKey: string,
  ): Promise<[number, unknown]> {
    if (path === '/v1/checkout/sessions') {
      this.createCalls++;
      const form = new URLSearchParams(body);
      const meta = (name: string) => form.get(`metadata[${name}]`) ?? '';
      const id = `cs_test_${randomBytes(12).toString('hex')}`;
      const session: RecordedSession = {
        id,
        url: `https://checkout.stripe.com/c/pay/${id}`,
        status: 'open',
        paymentStatus: 'unpaid',
        paymentIntentId: `pi_test_${randomBytes(12).toString('hex')}`,
        request: {
          paymentId: meta('paymentId'),
          workflowId: meta('workflowId'),
          customerId: meta('customerId'),
          pack: meta('pack'),
          credits: Number(meta('credits')),
          amount: Number(meta('amount')),
          currency: meta('currency'),
          expiresAt: Number(form.get('expires_at')),
          idempotencyKey,
        },
        expireCalls: 0,
        created: Math.floor(Date.now() / 1000),
        saveCard: form.get('payment_intent_data[setup_future_usage]') === 'off_session',
        stripeCustomerId: form.get('customer'),
        paymentMethodId: null,
      };
      this.byId.set(id, session);
      this.sessions.set(session.request.paymentId, session);
      if (this.afterCreate) await this.afterCreate(session);
      return [200, this.apiObject(session, base)];
    }
    const expire = /^\/v1\/checkout\/sessions\/([^/]+)\/expire$/.exec(path);
    if (expire) {
      const session = this.byId.get(decodeURIComponent(expire[1]!));
      if (!session) return [404, missing(expire[1]!, 'session')];
      session.expireCalls++;
      if (session.status !== 'open') {
        return [
          400,
          {
            error: {
              type: 'invalid_request_error',
              message: `Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a status of "${session.status}".`,
            },
          },
        ];
      }
      session.status = 'expired';
      return [200, this.apiObject(session, base)];
    }
    if (path === '/v1/payment_intents') return this.chargeOffSession(body, base, idempotencyKey);
    if (path === '/v1/refunds') {
      const form = new URLSearchParams(body);
      const intent = form.get('payment_intent') ?? '';
      const session = this.sessionByIntent(intent);
      if (!session || session.paymentStatus !== 'paid') {
        return [
          400,
          {
            error: {
              type: 'invalid_request_error',
              code: 'resource_missing',
              param: 'payment_intent',
              message: `No such payment_intent: '${intent}'`,
            },
          },
        ];
      }
      const left = session.request.amount - this.refunded(intent);
      const amount = form.has('amount') ? Number(form.get('amount')) : left;
      if (!(amount > 0) || amount > left) {
        return [
          400,
          {
            error: {
              type: 'invalid_request_error',
              code: left <= 0 ? 'charge_already_refunded' : 'amount_too_large',
              param: 'amount',
              message:
                left <= 0
                  ? `Charge ${chargeIdOf(intent)} has already been refunded.`
                  : `Refund amount (${amount}) is greater than unrefunded amount on charge (${left}).`,
            },
          },
        ];
      }
      const metadata: Record<string, string> = {};
      for (const [k, v] of form) {
        const m = /^metadata\[(.+)\]$/.exec(k);
        if (m) metadata[m[1]!] = v;
      }
      const refund = this.addRefund(session, amount, metadata, this.refundOutcome);
      return [200, { ...base, ...this.refundObject(refund) }];
    }
    return [
      404,
      { error: { type: 'invalid_request_error', message: `Unrecognized request URL (${path}).` } },
    ];
  }

  /**
   * POST /v1/payment_intents with off_session and confirm: charges a saved card of the named
   * customer, ending as the test scripted (a decline, authentication required) or succeeded.
   */
  private chargeOffSession(
    body: string,
    base: Record<string, unknown>,
    idempotencyKey: string,
  ): [number, unknown] {
    const form = new URLSearchParams(body);
    const paymentMethodId = form.get('payment_method') ?? '';
    const stripeCustomerId = form.get('customer') ?? '';
    const card = this.cards.get(paymentMethodId);
    if (!card || card.stripeCustomerId !== stripeCustomerId) {
      return [400, missing(paymentMethodId, 'payment_method')];
    }
    const metadata: Record<string, string> = {};
    for (const [k, v] of form) {
      const m = /^metadata\[(.+)\]$/.exec(k);
      if (m) metadata[m[1]!] = v;
    }
    const outcome = this.offSessionScript.shift() ?? 'succeeded';
    const charge: RecordedOffSessionCharge = {
      id: `pi_test_${randomBytes(12).toString('hex')}`,
      stripeCustomerId,
      paymentMethodId,
      amount: Number(form.get('amount')),
      currency: form.get('currency') ?? '',
      metadata,
      idempotencyKey: idempotencyKey || undefined,
      status:
        outcome === 'succeeded'
          ? 'succeeded'
          : outcome === 'authentication_required'
            ? 'requires_action'
            : 'requires_payment_method',
      outcome,
      created: Math.floor(Date.now() / 1000),
    };
    this.offSessionCharges.push(charge);
    const object = { ...base, ...this.offSessionObject(charge) };
    if (outcome === 'card_declined') {
      return [
        402,
        cardError('card_declined', 'Your card was declined.', object, 'generic_decline'),
      ];
    }
    if (outcome === 'authentication_required') {
      return [
        402,
        cardError(
          'authentication_required',
          'Your card was declined. This transaction requires authentication.',
          object,
          'authentication_required',
        ),
      ];
    }
    return [200, object];
  }
}

/** A card error as Stripe answers it, with the payment intent it left behind. */
function cardError(code: string, message: string, intent: unknown, declineCode?: string) {
  return {
    error: {
      type: 'card_error',
      code,
      ...(declineCode ? { decline_code: declineCode } : {}),
      message,
      payment_intent: intent,
    },
  };
}

/** The charge id the double gives a payment intent's one charge. */
export function chargeIdOf(paymentIntentId: string): string {
  return paymentIntentId.replace(/^pi_/, 'ch_');
}

function missing(id: string, what: 'session' | 'payment_intent' | 'payment_method') {
  const name = what === 'session' ? 'checkout.session' : what;
  return {
    error: {
      type: 'invalid_request_error',
      code: 'resource_missing',
      param: what,
      message: `No such ${name}: '${id}'`,
    },
  };
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
export function stripeSignature(body: string, secret: string, timestamp?: number): string {
  return stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret,
    ...(timestamp !== undefined ? { timestamp } : {}),
  });
}
