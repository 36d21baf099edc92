// The service's one door to Stripe: Checkout Sessions created and expired with idempotency keys.
// Activities receive it as a dependency, so tests can put a recording double in front of stripe-mock.
import Stripe from 'stripe';

export interface CheckoutSessionRequest {
  paymentId: string;
  workflowId: string;
  customerId: string;
  pack: string;
  credits: number;
  /** Minor units. */
  amount: number;
  currency: string;
  /** Unix seconds; Stripe expires the session then. */
  expiresAt: number;
  /** Derived from the workflow id and step, so a retried call creates nothing new. */
  idempotencyKey: string;
  /**
   * Keep the card for off-session charges (auto top-up): the session creates a Stripe customer,
   * or uses `stripeCustomerId`, and the payment intent is set up for future off-session use.
   */
  saveCard?: boolean;
  /** The customer's Stripe customer from an earlier saved card, reused when saving another. */
  stripeCustomerId?: string | null;
}

/** What the service keeps of a Checkout Session. */
export interface CheckoutSessionInfo {
  id: string;
  url: string | null;
  /** open | complete | expired */
  status: string | null;
  /** paid | unpaid | no_payment_required */
  paymentStatus: string | null;
  paymentIntentId: string | null;
}

/** A refund of (part of) a payment intent, made by the refund workflow. */
export interface RefundRequest {
  paymentIntentId: string;
  /** Minor units. */
  amount: number;
  /** Our refund id and workflow: a refund Stripe reports back is recognised as ours by them. */
  refundId: string;
  workflowId: string;
  /** Derived from the workflow id and step, so a retried call refunds nothing twice. */
  idempotencyKey: string;
}

/** What the service keeps of a Stripe refund. */
export interface RefundInfo {
  id: string;
  paymentIntentId: string | null;
  chargeId: string | null;
  amount: number;
  currency: string;
  /** pending | requires_action | succeeded | failed | canceled */
  status: string | null;
  metadata: Record<string, string>;
  /** Unix seconds. */
  created: number;
}

/** A Checkout Session as a reconciliation lists it. */
export interface CheckoutSessionSummary extends CheckoutSessionInfo {
  amountTotal: number | null;
  currency: string | null;
  clientReferenceId: string | null;
  metadata: Record<string, string>;
  created: number;
}

export interface PaymentIntentInfo {
  id: string;
  /** succeeded | processing | requires_payment_method | canceled | … */
  status: string;
  amount: number;
  amountReceived: number;
  currency: string;
  metadata: Record<string, string>;
  created: number;
}

/** The card a paid payment intent used, and the Stripe customer it is attached to. */
export interface PaymentIntentCard {
  paymentIntentId: string;
  status: string;
  /** The Stripe customer (`cus_…`), or null when the payment was made without one. */
  stripeCustomerId: string | null;
  paymentMethodId: string | null;
  /** off_session when the card was set up for charges without the customer present. */
  setupFutureUsage: string | null;
  cardBrand: string | null;
  cardLast4: string | null;
}

/** An off-session charge of a saved card (auto top-up). */
export interface OffSessionChargeRequest {
  stripeCustomerId: string;
  paymentMethodId: string;
  /** Minor units. */
  amount: number;
  currency: string;
  description: string;
  metadata: Record<string, string>;
  /** From the charge id, so a retried call charges nothing twice. */
  idempotencyKey: string;
}

/**
 * What an off-session charge came to. `succeeded`: the money is taken. `declined` (card_declined
 * and other card errors) and `requires_action` (the bank wants the customer present, e.g. 3-D
 * Secure): nothing was taken, and trying again without the customer will not help.
 */
export type OffSessionChargeResult =
  | { outcome: 'succeeded'; paymentIntentId: string; status: string }
  | {
      outcome: 'declined' | 'requires_action';
      paymentIntentId: string | null;
      status: string | null;
      code: string;
      declineCode: string | null;
      message: string;
    };

export interface DisputeInfo {
  id: string;
  paymentIntentId: string | null;
  chargeId: string | null;
  amount: number;
  currency: string;
  /** warning_needs_response | needs_response | under_review | won | lost | … */
  status: string;
  reason: string | null;
  created: number;
}

/** One page of a Stripe list; `nextCursor` is the `starting_after` of the next page. */
export interface Page<T> {
  data: T[];
  hasMore: boolean;
  nextCursor: string | null;
}

/** Which objects a list asks for: created in [createdFrom, createdTo), after a cursor. */
export interface ListParams {
  /** Unix seconds, inclusive. */
  createdFrom?: number;
  /** Unix seconds, exclusive. */
  createdTo?: number;
  startingAfter?: string | null;
  /** 1..100, default 100. */
  limit?: number;
}

export interface StripeGateway {
  createCheckoutSession(request: CheckoutSessionRequest): Promise<CheckoutSessionInfo>;
  /** Expires an open session; a session that is already expired or complete is reported as it is. */
  expireCheckoutSession(sessionId: string, idempotencyKey: string): Promise<CheckoutSessionInfo>;
  /** Refunds part or all of a payment intent; the same key answers the same refund. */
  createRefund(request: RefundRequest): Promise<RefundInfo>;
  /** Refunds, newest first; of one payment intent when it is given. */
  listRefunds(params: ListParams & { paymentIntentId?: string }): Promise<Page<RefundInfo>>;
  listCheckoutSessions(params: ListParams): Promise<Page<CheckoutSessionSummary>>;
  listPaymentIntents(params: ListParams): Promise<Page<PaymentIntentInfo>>;
  listDisputes(params: ListParams): Promise<Page<DisputeInfo>>;
  /** The card and Stripe customer of a payment intent (to save a card after a checkout). */
  retrievePaymentIntentCard(paymentIntentId: string): Promise<PaymentIntentCard>;
  /** Charges a saved card without the customer present; the same key answers the same charge. */
  chargeSavedCard(request: OffSessionChargeRequest): Promise<OffSessionChargeResult>;
}

/** Stripe refused the request itself (bad parameters, key reused): retrying cannot help. */
export class StripeRequestRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'StripeRequestRefused';
  }
}

export interface StripeGatewayOptions {
  secretKey: string;
  /** stripe-mock or another Stripe-compatible base URL; the real API when absent. */
  apiBase?: string | undefined;
  successUrl: string;
  cancelUrl: string;
}

/** The metadata every session and its payment intent carry, so a webhook finds its workflow. */
export function checkoutMetadata(
  request: Omit<CheckoutSessionRequest, 'expiresAt' | 'idempotencyKey'>,
) {
  return {
    paymentId: request.paymentId,
    workflowId: request.workflowId,
    customerId: request.customerId,
    pack: request.pack,
    credits: String(request.credits),
    amount: String(request.amount),
    currency: request.currency,
  };
}

/**
 * The client's own limits. Worst case one call takes (retries + 1) × timeout plus the retry
 * delays (stripe-node waits at most 5 s between tries), which must fit in the checkout activity's
 * start-to-close; a unit test checks it.
 */
export const STRIPE_REQUEST_TIMEOUT_MS = 10_000;
export const STRIPE_MAX_NETWORK_RETRIES = 1;
export const STRIPE_MAX_RETRY_DELAY_MS = 5_000;

/** A stripe-node client, pointed at STRIPE_API_BASE when one is set (stripe-mock). */
export function createStripeClient(secretKey: string, apiBase?: string): Stripe {
  const limits = {
    maxNetworkRetries: STRIPE_MAX_NETWORK_RETRIES,
    timeout: STRIPE_REQUEST_TIMEOUT_MS,
  };
  if (!apiBase) return new Stripe(secretKey, limits);
  const url = new URL(apiBase);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return new Stripe(secretKey, {
    host: url.hostname,
    port: url.port ? Number(url.port) : protocol === 'http' ? 80 : 443,
    protocol,
    ...limits,
  });
}

function info(session: Stripe.Checkout.Session): CheckoutSessionInfo {
  const pi = session.payment_intent;
  return {
    id: session.id,
    url: session.url ?? null,
    status: session.status ?? null,
    paymentStatus: session.payment_status ?? null,
    paymentIntentId: typeof pi === 'string' ? pi : (pi?.id ?? null),
  };
}

const idOrNull = (value: unknown): string | null =>
  typeof value === 'string' ? value : ((value as { id?: string } | null)?.id ?? null);

const metadataOf = (value: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((value as Record<string, unknown> | null) ?? {})) {
    if (typeof v === 'string') out[k] = v;
  }
  return out;
};

function refundInfo(refund: Stripe.Refund): RefundInfo {
  return {
    id: refund.id,
    paymentIntentId: idOrNull(refund.payment_intent),
    chargeId: idOrNull(refund.charge),
    amount: refund.amount,
    currency: refund.currency,
    status: refund.status ?? null,
    metadata: metadataOf(refund.metadata),
    created: refund.created,
  };
}

function sessionSummary(session: Stripe.Checkout.Session): CheckoutSessionSummary {
  return {
    ...info(session),
    amountTotal: session.amount_total ?? null,
    currency: session.currency ?? null,
    clientReferenceId: session.client_reference_id ?? null,
    metadata: metadataOf(session.metadata),
    created: session.created,
  };
}

function paymentIntentInfo(intent: Stripe.PaymentIntent): PaymentIntentInfo {
  return {
    id: intent.id,
    status: intent.status,
    amount: intent.amount,
    amountReceived: intent.amount_received,
    currency: intent.currency,
    metadata: metadataOf(intent.metadata),
    created: intent.created,
  };
}

function disputeInfo(dispute: Stripe.Dispute): DisputeInfo {
  return {
    id: dispute.id,
    paymentIntentId: idOrNull(dispute.payment_intent),
    chargeId: idOrNull(dispute.charge),
    amount: dispute.amount,
    currency: dispute.currency,
    status: dispute.status,
    reason: dispute.reason ?? null,
    created: dispute.created,
  };
}

function paymentIntentCard(intent: Stripe.PaymentIntent): PaymentIntentCard {
  const method = intent.payment_method;
  const card = typeof method === 'object' && method !== null ? method.card : undefined;
  return {
    paymentIntentId: intent.id,
    status: intent.status,
    stripeCustomerId: idOrNull(intent.customer),
    paymentMethodId: idOrNull(method),
    setupFutureUsage: intent.setup_future_usage ?? null,
    cardBrand: card?.brand ?? null,
    cardLast4: card?.last4 ?? null,
  };
}

/** An off-session intent that came back without a card error: succeeded, or still wants the customer. */
function offSessionResult(intent: Stripe.PaymentIntent): OffSessionChargeResult {
  if (intent.status === 'succeeded') {
    return { outcome: 'succeeded', paymentIntentId: intent.id, status: intent.status };
  }
  if (intent.status === 'processing') {
    // Cards settle at once; an intent still processing may yet take the money, so it is neither
    // a success to credit nor a decline to give up on: the activity retries and alerts.
    throw new Error(`off-session payment intent ${intent.id} is still processing`);
  }
  const error = intent.last_payment_error;
  return {
    outcome: intent.status === 'requires_action' ? 'requires_action' : 'declined',
    paymentIntentId: intent.id,
    status: intent.status,
    code:
      error?.code ??
      (intent.status === 'requires_action' ? 'authentication_required' : intent.status),
    declineCode: error?.decline_code ?? null,
    message: error?.message ?? `The payment intent is ${intent.status}.`,
  };
}

/** Stripe's list parameters for a window and a cursor. */
function listQuery(params: ListParams) {
  const created: { gte?: number; lt?: number } = {};
  if (params.createdFrom !== undefined) created.gte = params.createdFrom;
  if (params.createdTo !== undefined) created.lt = params.createdTo;
  return {
    limit: Math.min(Math.max(params.limit ?? 100, 1), 100),
    ...(Object.keys(created).length > 0 ? { created } : {}),
    ...(params.startingAfter ? { starting_after: params.startingAfter } : {}),
  };
}

function page<S extends { id: string }, T>(list: Stripe.ApiList<S>, map: (item: S) => T): Page<T> {
  const last = list.data.at(-1);
  return {
    data: list.data.map(map),
    hasMore: list.has_more,
    nextCursor: list.has_more && last ? last.id : null,
  };
}

/** Refusals Stripe will repeat on every retry become StripeRequestRefused; the rest retries. */
function classify(err: unknown): never {
  if (err instanceof Stripe.errors.StripeInvalidRequestError) {
    throw new StripeRequestRefused(err.code ?? 'invalid_request', err.message);
  }
  if (err instanceof Stripe.errors.StripeIdempotencyError) {
    throw new StripeRequestRefused('idempotency_error', err.message);
  }
  if (err instanceof Stripe.errors.StripeAuthenticationError) {
    // A wrong key is fixed by an operator, after which the retry should go through.
    throw new Error(`Stripe rejected the API key: ${err.message}`);
  }
  throw err;
}

/** The real gateway over stripe-node. */
export function createStripeGateway(options: StripeGatewayOptions): StripeGateway {
  const stripe = createStripeClient(options.secretKey, options.apiBase);
  return {
    async createCheckoutSession(request) {
      const metadata = checkoutMetadata(request);
      try {
        const session = await stripe.checkout.sessions.create(
          {
            mode: 'payment',
            client_reference_id: request.paymentId,
            metadata,
            payment_intent_data: {
              metadata,
              ...(request.saveCard ? { setup_future_usage: 'off_session' as const } : {}),
            },
            ...(request.saveCard
              ? request.stripeCustomerId
                ? { customer: request.stripeCustomerId }
                : { customer_creation: 'always' as const }
              : {}),
            expires_at: request.expiresAt,
            line_items: [
              {
                quantity: 1,
                price_data: {
                  currency: request.currency,
                  unit_amount: request.amount,
                  product_data: { name: `${request.credits} credits (${request.pack} pack)` },
                },
              },
            ],
            success_url: options.successUrl,
            cancel_url: options.cancelUrl,
          },
          { idempotencyKey: request.idempotencyKey },
        );
        return info(session);
      } catch (err) {
        return classify(err);
      }
    },

    async expireCheckoutSession(sessionId, idempotencyKey) {
      try {
        return info(await stripe.checkout.sessions.expire(sessionId, {}, { idempotencyKey }));
      } catch (err) {
        // "Only open sessions can be expired": it already expired or was paid; say which.
        if (err instanceof Stripe.errors.StripeInvalidRequestError) {
          try {
            return info(await stripe.checkout.sessions.retrieve(sessionId));
          } catch (retrieveErr) {
            return classify(retrieveErr);
          }
        }
        return classify(err);
      }
    },

    async createRefund(request) {
      try {
        const refund = await stripe.refunds.create(
          {
            payment_intent: request.paymentIntentId,
            amount: request.amount,
            reason: 'requested_by_customer',
            metadata: { refundId: request.refundId, workflowId: request.workflowId },
          },
          { idempotencyKey: request.idempotencyKey },
        );
        return refundInfo(refund);
      } catch (err) {
        return classify(err);
      }
    },

    async listRefunds(params) {
      try {
        const list = await stripe.refunds.list({
          ...listQuery(params),
          ...(params.paymentIntentId ? { payment_intent: params.paymentIntentId } : {}),
        });
        return page(list, refundInfo);
      } catch (err) {
        return classify(err);
      }
    },

    async listCheckoutSessions(params) {
      try {
        return page(await stripe.checkout.sessions.list(listQuery(params)), sessionSummary);
      } catch (err) {
        return classify(err);
      }
    },

    async listPaymentIntents(params) {
      try {
        return page(await stripe.paymentIntents.list(listQuery(params)), paymentIntentInfo);
      } catch (err) {
        return classify(err);
      }
    },

    async listDisputes(params) {
      try {
        return page(await stripe.disputes.list(listQuery(params)), disputeInfo);
      } catch (err) {
        return classify(err);
      }
    },

    async retrievePaymentIntentCard(paymentIntentId) {
      try {
        const intent = await stripe.paymentIntents.retrieve(paymentIntentId, {
          expand: ['payment_method'],
        });
        return paymentIntentCard(intent);
      } catch (err) {
        return classify(err);
      }
    },

    async chargeSavedCard(request) {
      try {
        const intent = await stripe.paymentIntents.create(
          {
            amount: request.amount,
            currency: request.currency,
            customer: request.stripeCustomerId,
            payment_method: request.paymentMethodId,
            off_session: true,
            confirm: true,
            description: request.description,
            metadata: request.metadata,
          },
          { idempotencyKey: request.idempotencyKey },
        );
        return offSessionResult(intent);
      } catch (err) {
        // A card error is Stripe's verdict on this card, not an outage: never retried.
        if (err instanceof Stripe.errors.StripeCardError) {
          const raw = err.raw as { payment_intent?: { id?: string; status?: string } } | undefined;
          const code = err.code ?? 'card_declined';
          return {
            outcome: code === 'authentication_required' ? 'requires_action' : 'declined',
            paymentIntentId: raw?.payment_intent?.id ?? null,
            status: raw?.payment_intent?.status ?? null,
            code,
            declineCode: err.decline_code ?? null,
            message: err.message,
          };
        }
        return classify(err);
      }
    },
  };
}
