// Stripe webhooks: verified on the raw body, recorded once, and handed to the checkout workflow.
import { Hono } from 'hono';
import Stripe from 'stripe';
import { z } from 'zod';
import { readPayment } from '../../activities/checkout.js';
import { CREDITED_STATUSES } from '../../payments/state-machine.js';
import {
  searchAttributes,
  stripeOutcomeSignal,
  workflowIds,
  type CheckoutInput,
  type StripeOutcome,
} from '../../shared.js';
import type { checkout } from '../../workflows/checkout.js';
import { DEFAULT_CHECKOUT_EXPIRY_SECONDS } from '../checkouts/routes.js';
import { UUID_PATTERN, type AppDeps } from '../common.js';
import { ApiError, errorBody } from '../errors.js';

/** The shape every Stripe event has; anything else signed with our secret is still refused. */
const EventSchema = z.object({
  id: z.string().min(1).max(255),
  object: z.literal('event'),
  type: z.string().min(1).max(255),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});

/** The metadata our checkout sessions (and their payment intents) carry; see stripe/gateway.ts. */
const CheckoutMetadataSchema = z.object({
  paymentId: z.string().regex(/^pay_[a-z0-9]{1,64}$/i),
  workflowId: z.string().min(1),
  customerId: z.string().regex(UUID_PATTERN),
  pack: z.string().min(1).max(32),
  credits: z.coerce.number().int().positive(),
  amount: z.coerce.number().int().positive(),
  currency: z.string().min(3).max(3),
});
type CheckoutMetadata = z.infer<typeof CheckoutMetadataSchema>;

type Routing =
  | { action: 'route'; outcome: StripeOutcome; metadata: CheckoutMetadata }
  | { action: 'flag'; note: string; paymentIntentId: string | null }
  | { action: 'ignore'; note: string | null };

const idOf = (value: unknown): string | null =>
  typeof value === 'string' ? value : ((value as { id?: string } | null)?.id ?? null);

/** What an event means for us. Types we do not handle are recorded as ignored. */
function routingFor(event: z.infer<typeof EventSchema>): Routing {
  const object = event.data.object;
  const outcome = (kind: StripeOutcome['kind'], isSession: boolean): Routing => {
    const metadata = CheckoutMetadataSchema.safeParse(object.metadata);
    if (
      !metadata.success ||
      metadata.data.workflowId !== workflowIds.checkout(metadata.data.paymentId)
    ) {
      return { action: 'ignore', note: 'not a creditflow checkout (no checkout metadata)' };
    }
    return {
      action: 'route',
      metadata: metadata.data,
      outcome: {
        eventId: event.id,
        eventType: event.type,
        kind,
        sessionId: isSession ? idOf(object.id) : null,
        paymentIntentId: isSession ? idOf(object.payment_intent) : idOf(object.id),
      },
    };
  };
  switch (event.type) {
    case 'checkout.session.completed':
      // A bank debit completes the session unpaid; the async_payment_* event settles it later.
      return outcome(
        object.payment_status === 'paid' || object.payment_status === 'no_payment_required'
          ? 'paid'
          : 'processing',
        true,
      );
    case 'checkout.session.async_payment_succeeded':
      return outcome('paid', true);
    case 'checkout.session.async_payment_failed':
      return outcome('failed', true);
    case 'checkout.session.expired':
      return outcome('expired', true);
    case 'payment_intent.succeeded':
      return outcome('paid', false);
    case 'charge.refunded':
    case 'charge.dispute.created':
      return {
        action: 'flag',
        note: `flagged for review: ${event.type} is recorded but not acted on until the refund workflow exists`,
        paymentIntentId: idOf(object.payment_intent),
      };
    default:
      return { action: 'ignore', note: null };
  }
}

/** POST /webhooks/stripe: public (Stripe signs it), so it sits outside the /v1 auth middleware. */
export function stripeWebhookRoutes({
  db,
  temporal,
  taskQueue,
  logger,
  stripeWebhookSecret,
  checkout: options,
}: AppDeps) {
  const app = new Hono();
  const expiresInSeconds = options?.expirySeconds ?? DEFAULT_CHECKOUT_EXPIRY_SECONDS;

  const finish = async (
    eventId: string,
    status: 'completed' | 'failed' | 'ignored' | 'flagged',
    error: string | null,
  ) => {
    await db.sql`
      update stripe_events set status = ${status}, error = ${error}, processed_at = now()
      where id = ${eventId}`;
  };

  /** Receives Stripe's events: verify, record once, route to the checkout workflow. */
  app.post('/webhooks/stripe', async (c) => {
    if (!stripeWebhookSecret) {
      throw new ApiError(
        503,
        'webhooks_not_configured',
        'STRIPE_WEBHOOK_SECRET is not set on the API, so events cannot be verified; Stripe will retry.',
      );
    }
    const signature = c.req.header('stripe-signature');
    if (!signature) {
      throw new ApiError(
        400,
        'missing_signature',
        'The Stripe-Signature header is missing; only events signed by Stripe are accepted.',
      );
    }
    // The signature covers the exact bytes Stripe sent, so verify those, not a re-encoding.
    const raw = Buffer.from(await c.req.arrayBuffer());
    let verified: unknown;
    try {
      verified = Stripe.webhooks.constructEvent(raw, signature, stripeWebhookSecret);
    } catch (err) {
      if (err instanceof Stripe.errors.StripeSignatureVerificationError) {
        throw new ApiError(
          400,
          'invalid_signature',
          `The Stripe-Signature does not verify (${err.message.split('\n')[0]}); check STRIPE_WEBHOOK_SECRET.`,
        );
      }
      throw new ApiError(400, 'invalid_payload', 'The body is signed but is not JSON.');
    }
    const parsed = EventSchema.safeParse(verified);
    if (!parsed.success) {
      throw new ApiError(400, 'invalid_payload', 'The body is signed but is not a Stripe event.');
    }
    const event = parsed.data;
    const routing = routingFor(event);
    const paymentId = routing.action === 'route' ? routing.metadata.paymentId : null;

    const [inserted] = await db.sql<{ id: string }[]>`
      insert into stripe_events (id, type, status, payment_id, payload)
      values (${event.id}, ${event.type}, 'processing', ${paymentId}, ${JSON.stringify(verified)}::jsonb)
      on conflict (id) do nothing
      returning id`;
    if (!inserted) {
      const [existing] = await db.sql<{ status: string }[]>`
        select status from stripe_events where id = ${event.id}`;
      if (existing && ['completed', 'ignored', 'flagged'].includes(existing.status)) {
        return c.json({ received: true, duplicate: true, status: existing.status }, 200);
      }
      // Still processing elsewhere, or an earlier delivery failed: deliver again; the workflow
      // drops an event id it has already seen.
    }

    if (routing.action === 'ignore') {
      await finish(event.id, 'ignored', routing.note);
      return c.json({ received: true, status: 'ignored' }, 200);
    }
    if (routing.action === 'flag') {
      const [payment] = routing.paymentIntentId
        ? await db.sql<{ id: string }[]>`
            select id from payments where payment_intent_id = ${routing.paymentIntentId}`
        : [];
      if (payment) {
        await db.sql`update stripe_events set payment_id = ${payment.id} where id = ${event.id}`;
      }
      await finish(event.id, 'flagged', routing.note);
      logger.warn(
        { eventId: event.id, type: event.type, paymentId: payment?.id ?? null },
        'stripe event flagged for review',
      );
      return c.json({ received: true, status: 'flagged' }, 200);
    }

    const { metadata, outcome } = routing;
    const payment = await readPayment(db, metadata.paymentId);
    // Our API records the payment before it opens the session, so a session whose payment we
    // never recorded (or that names another customer or workflow) was not opened by us: its
    // metadata is not trusted to create credits. It is kept for review instead.
    if (
      !payment ||
      payment.customerId !== metadata.customerId ||
      payment.workflowId !== metadata.workflowId
    ) {
      const note = payment
        ? `flagged for review: the event's metadata does not match payment ${payment.id}; not credited`
        : `flagged for review: no payment ${metadata.paymentId} was recorded here; not credited`;
      await finish(event.id, 'flagged', note);
      logger.warn({ eventId: event.id, type: event.type, paymentId: metadata.paymentId }, note);
      return c.json({ received: true, status: 'flagged' }, 200);
    }
    if (CREDITED_STATUSES.includes(payment.status)) {
      // Already credited: a repeat or stale report of a settled payment changes nothing.
      await finish(event.id, 'completed', null);
      return c.json({ received: true, status: 'completed' }, 200);
    }
    const input: CheckoutInput = {
      paymentId: metadata.paymentId,
      // The payment record, not the event, says what was bought.
      customerId: payment.customerId,
      pack: payment.pack,
      credits: payment.credits,
      amount: payment.amount,
      currency: payment.currency,
      expiresInSeconds,
      startedBy: 'webhook',
    };
    try {
      // Running: the signal reaches it. Closed (expired, failed) or never started: a new run
      // takes the event, which is the late-payment path.
      await temporal.workflow.signalWithStart<typeof checkout, [StripeOutcome]>('checkout', {
        taskQueue,
        workflowId: metadata.workflowId,
        args: [input],
        signal: stripeOutcomeSignal,
        signalArgs: [outcome],
        memo: { input },
        typedSearchAttributes: [
          { key: searchAttributes.customerId, value: input.customerId },
          { key: searchAttributes.flowStatus, value: payment.status },
        ],
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await finish(event.id, 'failed', message.slice(0, 1000)).catch(() => undefined);
      logger.error({ err, eventId: event.id, type: event.type }, 'stripe event not delivered');
      return c.json(
        errorBody('delivery_failed', 'The event could not be handed over; Stripe will retry.'),
        503,
      );
    }
    await finish(event.id, 'completed', null);
    logger.info(
      { eventId: event.id, type: event.type, paymentId: metadata.paymentId, kind: outcome.kind },
      'stripe event routed',
    );
    return c.json({ received: true, status: 'completed' }, 200);
  });

  return app;
}
