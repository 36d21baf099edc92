// Stripe webhooks: verified on the raw body, recorded once, and handed to the checkout workflow.
import { Hono } from 'hono';
import Stripe from 'stripe';
import { z } from 'zod';
import { readPayment, type PaymentRecord } from '../../activities/checkout.js';
import { raiseAlert } from '../../alerts/alerts.js';
import { reportDispute, reportStripeRefund } from '../../refunds/start.js';
import { CREDITED_STATUSES } from '../../payments/state-machine.js';
import { reportCheckoutOutcome } from '../../payments/report.js';
import type { StripeOutcome } from '../../shared.js';
import { DEFAULT_CHECKOUT_EXPIRY_SECONDS } from '../checkouts/routes.js';
import type { AppDeps } from '../common.js';
import { ApiError, errorBody } from '../errors.js';

/** The shape every Stripe event has; anything else signed with our secret is still refused. */
const EventSchema = z.object({
  id: z.string().min(1).max(255),
  object: z.literal('event'),
  type: z.string().min(1).max(255),
  /** When Stripe created the event (unix seconds): where the webhook lag metric starts. */
  created: z.number().int().nonnegative().optional(),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});

/** The ids our API gives payments; a checkout session names one in client_reference_id and metadata. */
const PAYMENT_ID = /^pay_[a-z0-9]{1,64}$/i;

/** How far in the future a Stripe-Signature timestamp may be, like the tolerance for old ones. */
export const STRIPE_SIGNATURE_TOLERANCE_SECONDS = 300;

type EventObject = Record<string, unknown>;

type Routing =
  | {
      action: 'check';
      /** The payment ids the event names, most often one. */
      paymentIds: string[];
      kind: StripeOutcome['kind'] | 'unpaid';
      isSession: boolean;
      /** Why the event disagrees with itself before any payment is read (two payment ids). */
      problem: string | null;
    }
  | { action: 'flag'; note: string; paymentIntentId: string | null }
  /** A refund made or changed at Stripe (charge.refunded, refund updates): by its payment intent. */
  | { action: 'stripeRefund'; paymentIntentId: string | null; amountRefunded: number }
  /** charge.dispute.created / updated / closed: found by the disputed payment intent. */
  | { action: 'dispute'; paymentIntentId: string | null }
  | { action: 'ignore'; note: string | null };

const idOf = (value: unknown): string | null =>
  typeof value === 'string' ? value : ((value as { id?: string } | null)?.id ?? null);

const stringField = (object: unknown, key: string): string | null => {
  const value = (object as Record<string, unknown> | null | undefined)?.[key];
  return typeof value === 'string' ? value : null;
};

/**
 * Which recorded payment an event is about, and what it says happened. A session names the
 * payment in client_reference_id and in its metadata; a payment intent in its metadata.
 */
function routingFor(event: z.infer<typeof EventSchema>): Routing {
  const object = event.data.object;
  const about = (kind: StripeOutcome['kind'] | 'unpaid', isSession: boolean): Routing => {
    const named = [
      isSession ? stringField(object, 'client_reference_id') : null,
      stringField(object.metadata, 'paymentId'),
    ].filter((id): id is string => id !== null && PAYMENT_ID.test(id));
    if (named.length === 0) {
      return { action: 'ignore', note: 'not a creditflow checkout (names no payment of ours)' };
    }
    const paymentIds = [...new Set(named)];
    const problem =
      paymentIds.length > 1
        ? `client_reference_id ${named[0]} and metadata.paymentId ${named[1]} name different payments`
        : null;
    return { action: 'check', paymentIds, kind, isSession, problem };
  };
  switch (event.type) {
    case 'checkout.session.completed':
      // A bank debit completes the session unpaid; the async_payment_* event settles it later.
      // Anything else (no_payment_required) never credits a pack that has a price.
      return about(
        object.payment_status === 'paid'
          ? 'paid'
          : object.payment_status === 'unpaid'
            ? 'processing'
            : 'unpaid',
        true,
      );
    case 'checkout.session.async_payment_succeeded':
      return about('paid', true);
    case 'checkout.session.async_payment_failed':
      return about('failed', true);
    case 'checkout.session.expired':
      return about('expired', true);
    case 'payment_intent.succeeded':
      return about('paid', false);
    case 'charge.refunded':
      return {
        action: 'stripeRefund',
        paymentIntentId: idOf(object.payment_intent),
        amountRefunded: typeof object.amount_refunded === 'number' ? object.amount_refunded : 0,
      };
    case 'charge.refund.updated':
    case 'refund.updated':
    case 'refund.failed':
      // A refund changed state after it was made (ours failing at the bank, most often): the
      // payment's refund workflow lists its refunds again and acts on what changed.
      return {
        action: 'stripeRefund',
        paymentIntentId: idOf(object.payment_intent),
        amountRefunded: 0,
      };
    case 'charge.dispute.created':
    case 'charge.dispute.updated':
    case 'charge.dispute.closed':
      return { action: 'dispute', paymentIntentId: idOf(object.payment_intent) };
    default:
      return { action: 'ignore', note: null };
  }
}

/**
 * Every way the event disagrees with the payment our API recorded: its session, payment intent,
 * amount, currency, customer or workflow, or a "paid" that is not `paid`. Empty when it agrees.
 */
export function disagreements(
  object: EventObject,
  routing: Extract<Routing, { action: 'check' }>,
  payment: PaymentRecord,
): string[] {
  const found: string[] = [];
  if (routing.problem) found.push(routing.problem);
  const metadata = (object.metadata ?? {}) as Record<string, unknown>;
  const customerId = stringField(metadata, 'customerId');
  if (customerId !== null && customerId.toLowerCase() !== payment.customerId.toLowerCase()) {
    found.push("metadata.customerId is not the payment's customer");
  }
  const workflowId = stringField(metadata, 'workflowId');
  if (workflowId !== null && workflowId !== payment.workflowId) {
    found.push("metadata.workflowId is not the payment's workflow");
  }
  const amount = routing.isSession
    ? object.amount_total
    : (object.amount_received ?? object.amount);
  if (amount !== payment.amount) {
    found.push(`amount ${JSON.stringify(amount)} is not the recorded ${payment.amount}`);
  }
  const currency = stringField(object, 'currency');
  if (currency === null || currency.toLowerCase() !== payment.currency.toLowerCase()) {
    found.push(`currency ${String(currency)} is not the recorded ${payment.currency}`);
  }
  const intentId = routing.isSession ? idOf(object.payment_intent) : idOf(object.id);
  if (payment.paymentIntentId && intentId && intentId !== payment.paymentIntentId) {
    found.push(`payment intent ${intentId} is not the recorded ${payment.paymentIntentId}`);
  }
  if (routing.isSession) {
    const sessionId = idOf(object.id);
    // Until the session-opening step has stored the id (a webhook can beat it), the other
    // checks stand alone; the workflow only credits the payment it recorded.
    if (payment.sessionId && sessionId !== payment.sessionId) {
      found.push(`session ${String(sessionId)} is not the recorded ${payment.sessionId}`);
    }
  } else if (
    routing.kind === 'paid' &&
    object.status !== undefined &&
    object.status !== 'succeeded'
  ) {
    found.push(`payment intent status ${JSON.stringify(object.status)} is not succeeded`);
  }
  if (routing.kind === 'unpaid') {
    found.push(`payment_status ${JSON.stringify(object.payment_status)} is not paid`);
  } else if (routing.isSession && routing.kind === 'paid' && object.payment_status !== 'paid') {
    found.push(`payment_status ${JSON.stringify(object.payment_status)} is not paid`);
  }
  return found;
}

// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when every string (keys too) in a parsed JSON value can be stored as jsonb. */
function storable(value: unknown): boolean {
  if (typeof value === 'string') return !UNSTORABLE.test(value);
  if (Array.isArray(value)) return value.every(storable);
  if (value && typeof value === 'object') {
    return Object.entries(value).every(([k, v]) => storable(k) && storable(v));
  }
  return true;
}

/** The Stripe-Signature timestamp (`t=`), or null when the header has none. */
function signatureTimestamp(header: string): number | null {
  const match = /(?:^|,)t=(\d{1,12})(?:,|$)/.exec(header);
  return match ? Number(match[1]) : null;
}

/** POST /webhooks/stripe: public (Stripe signs it), so it sits outside the /v1 auth middleware. */
export function stripeWebhookRoutes({
  db,
  temporal,
  taskQueue,
  logger,
  stripeWebhookSecret,
  checkout: options,
  metrics,
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

  const paymentByIntent = async (paymentIntentId: string | null) => {
    if (!paymentIntentId) return undefined;
    const [row] = await db.sql<{ id: string }[]>`
      select id from payments where payment_intent_id = ${paymentIntentId}`;
    return row ? readPayment(db, row.id) : undefined;
  };

  /** Keeps an event about money we cannot place for a person, with an alert. */
  const flagForReview = async (
    event: z.infer<typeof EventSchema>,
    paymentId: string | null,
    note: string,
  ) => {
    await finish(event.id, 'flagged', note);
    metrics?.stripeEventsFlagged.inc({ type: event.type });
    await raiseAlert(
      db.sql,
      {
        key: `stripe_event_flagged:${event.id}`,
        kind: 'stripe_event_flagged',
        severity: 'critical',
        message: `Stripe event ${event.id} (${event.type}) was flagged for review: ${note}`,
        details: { eventId: event.id, type: event.type, paymentId },
      },
      { log: logger, counter: metrics?.alertsRaised },
    );
  };

  /**
   * charge.refunded and charge.dispute.*: hands the report to the refund workflow of the
   * payment (or the dispute) by signal-with-start, which drops an event id it has seen.
   */
  const handOverRefundOrDispute = async (
    event: z.infer<typeof EventSchema>,
    routing: Extract<Routing, { action: 'stripeRefund' | 'dispute' }>,
    payment: PaymentRecord | undefined,
  ): Promise<[Record<string, unknown>, 200 | 503]> => {
    const object = event.data.object;
    const disputeId = routing.action === 'dispute' ? idOf(object.id) : null;
    const problem = !routing.paymentIntentId
      ? 'it names no payment intent'
      : !payment
        ? `no payment of ours has payment intent ${routing.paymentIntentId}`
        : routing.action === 'dispute' && !disputeId
          ? 'the dispute has no id'
          : null;
    if (problem || !payment || !routing.paymentIntentId) {
      await flagForReview(event, payment?.id ?? null, `flagged for review: ${problem}`);
      return [{ received: true, status: 'flagged' }, 200];
    }
    const target = { temporal, taskQueue };
    const about = { paymentId: payment.id, customerId: payment.customerId };
    try {
      if (routing.action === 'stripeRefund') {
        await reportStripeRefund(
          target,
          about,
          {
            eventId: event.id,
            paymentId: payment.id,
            paymentIntentId: routing.paymentIntentId,
            amountRefunded: routing.amountRefunded,
          },
          'webhook',
        );
      } else {
        await reportDispute(
          target,
          about,
          {
            eventId: event.id,
            eventType: event.type,
            disputeId: disputeId!,
            paymentId: payment.id,
            paymentIntentId: routing.paymentIntentId,
            amount: typeof object.amount === 'number' ? object.amount : payment.amount,
            currency: stringField(object, 'currency') ?? payment.currency,
            status: stringField(object, 'status') ?? 'needs_response',
            reason: stringField(object, 'reason'),
          },
          'webhook',
        );
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await finish(event.id, 'failed', message.slice(0, 1000)).catch(() => undefined);
      logger.error({ err, eventId: event.id, type: event.type }, 'stripe event not delivered');
      return [
        errorBody('delivery_failed', 'The event could not be handed over; Stripe will retry.'),
        503,
      ];
    }
    await finish(event.id, 'completed', null);
    logger.info(
      { eventId: event.id, type: event.type, paymentId: payment.id, disputeId },
      'stripe event routed to the refund workflow',
    );
    return [{ received: true, status: 'completed' }, 200];
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
    const signedAt = signatureTimestamp(signature);
    if (
      signedAt !== null &&
      signedAt > Math.floor(Date.now() / 1000) + STRIPE_SIGNATURE_TOLERANCE_SECONDS
    ) {
      throw new ApiError(
        400,
        'invalid_signature',
        "The Stripe-Signature timestamp is in the future; check the sender's clock.",
      );
    }
    // PostgreSQL cannot store a NUL or half a surrogate pair in jsonb; Stripe never sends them.
    if (!storable(verified)) {
      throw new ApiError(
        400,
        'invalid_payload',
        'The body contains a NUL character or an unpaired surrogate.',
      );
    }
    const parsed = EventSchema.safeParse(verified);
    if (!parsed.success) {
      throw new ApiError(400, 'invalid_payload', 'The body is signed but is not a Stripe event.');
    }
    const event = parsed.data;
    const routing = routingFor(event);
    // Lag of an event processed here for the first time (a redelivery of a settled one is not).
    const processed = <T>(answer: T): T => {
      if (event.created !== undefined) {
        metrics?.webhookLag.observe(
          { provider: 'stripe', type: event.type },
          Math.max(0, Date.now() / 1000 - event.created),
        );
      }
      return answer;
    };

    // Decide before recording, so the row says which payment the event is about.
    let payment: PaymentRecord | undefined;
    let flagNote: string | null = null;
    if (routing.action === 'check') {
      for (const id of routing.paymentIds) {
        payment ??= await readPayment(db, id);
      }
      // Our API records the payment before it opens the session, so an event about a payment we
      // never recorded, or that does not agree with the one we did, is not trusted to move
      // money: it is kept for review and raised as an alert.
      const problems = payment
        ? disagreements(event.data.object, routing, payment)
        : [`no payment ${routing.paymentIds.join(' or ')} was recorded here`];
      if (problems.length > 0) {
        flagNote = `flagged for review: ${problems.join('; ')}; not credited`;
      }
    } else if (routing.action === 'stripeRefund' || routing.action === 'dispute') {
      // The charge and the dispute carry no metadata of ours: the payment intent recorded when
      // the payment was credited names the payment.
      payment = await paymentByIntent(routing.paymentIntentId);
    } else if (routing.action === 'flag') {
      flagNote = routing.note;
      if (routing.paymentIntentId) {
        const [row] = await db.sql<{ id: string }[]>`
          select id from payments where payment_intent_id = ${routing.paymentIntentId}`;
        payment = row ? await readPayment(db, row.id) : undefined;
      }
    }
    const paymentId =
      payment?.id ?? (routing.action === 'check' ? (routing.paymentIds[0] ?? null) : null);

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
      return processed(c.json({ received: true, status: 'ignored' }, 200));
    }
    if (routing.action === 'stripeRefund' || routing.action === 'dispute') {
      const [body, status] = await handOverRefundOrDispute(event, routing, payment);
      return status === 200 ? processed(c.json(body, status)) : c.json(body, status);
    }
    if (flagNote !== null || routing.action !== 'check' || !payment) {
      const note = flagNote ?? 'flagged for review';
      await finish(event.id, 'flagged', note);
      metrics?.stripeEventsFlagged.inc({ type: event.type });
      // An alert, not a warning: money may have moved at Stripe that we did not credit.
      logger.error(
        { eventId: event.id, type: event.type, paymentId, alert: 'stripe_event_flagged', note },
        'stripe event flagged for review',
      );
      return processed(c.json({ received: true, status: 'flagged' }, 200));
    }

    const outcome: StripeOutcome = {
      eventId: event.id,
      eventType: event.type,
      // 'unpaid' never gets here: it always disagrees with a payment that has a price.
      kind: routing.kind === 'unpaid' ? 'processing' : routing.kind,
      sessionId: routing.isSession ? idOf(event.data.object.id) : null,
      paymentIntentId: routing.isSession
        ? idOf(event.data.object.payment_intent)
        : idOf(event.data.object.id),
    };
    if (CREDITED_STATUSES.includes(payment.status)) {
      // Already credited: a repeat or stale report of a settled payment changes nothing.
      await finish(event.id, 'completed', null);
      return processed(c.json({ received: true, status: 'completed' }, 200));
    }
    try {
      await reportCheckoutOutcome({ temporal, taskQueue, expiresInSeconds }, payment, outcome);
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
      { eventId: event.id, type: event.type, paymentId: payment.id, kind: outcome.kind },
      'stripe event routed',
    );
    return processed(c.json({ received: true, status: 'completed' }, 200));
  });

  return app;
}
