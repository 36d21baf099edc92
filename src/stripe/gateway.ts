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

export interface StripeGateway {
  createCheckoutSession(request: CheckoutSessionRequest): Promise<CheckoutSessionInfo>;
  /** Expires an open session; a session that is already expired or complete is reported as it is. */
  expireCheckoutSession(sessionId: string, idempotencyKey: string): Promise<CheckoutSessionInfo>;
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
            payment_intent_data: { metadata },
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
  };
}
