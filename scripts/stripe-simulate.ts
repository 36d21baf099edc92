// `npm run stripe:simulate -- <paymentId> [--event …] [--url <api>]`: plays Stripe for a top-up —
// builds the event for the payment's Checkout Session, signs it with STRIPE_WEBHOOK_SECRET exactly
// as Stripe does, and posts it to the API's webhook. The payment's session, amount and currency
// come from flags, from the API (GET /v1/checkouts/<id>), or from the database (see the usage).
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { mintToken } from '../src/api/auth.js';
import { loadConfigOrExit, loadLocalStackEnv, required, type Config } from '../src/config.js';
import { createDatabase } from '../src/db/client.js';
import {
  STRIPE_SIMULATE_USAGE,
  UsageError,
  checkoutSessionEvent,
  parseStripeSimulateArgs,
  type CheckoutFacts,
  type StripeSimulateArgs,
} from './local-tools.js';

/** Stops with a message and exit code 1. */
function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

async function fromDatabase(databaseUrl: string, paymentId: string): Promise<CheckoutFacts> {
  const db = createDatabase(databaseUrl);
  try {
    const [payment] = await db.sql<
      {
        workflow_id: string;
        customer_id: string;
        pack: string;
        credits: string;
        amount: string;
        currency: string;
        stripe_session_id: string | null;
        payment_intent_id: string | null;
      }[]
    >`select * from payments where id = ${paymentId}`;
    if (!payment?.stripe_session_id) {
      fail(`No payment ${paymentId} with a Stripe session; start one with POST /v1/checkouts.`);
    }
    return {
      sessionId: payment.stripe_session_id,
      amount: Number(payment.amount),
      currency: payment.currency,
      paymentIntentId: payment.payment_intent_id ?? undefined,
      metadata: {
        workflowId: payment.workflow_id,
        customerId: payment.customer_id,
        pack: payment.pack,
        credits: payment.credits,
        amount: payment.amount,
        currency: payment.currency,
      },
    };
  } finally {
    await db.close();
  }
}

async function fromApi(args: StripeSimulateArgs, token: string): Promise<CheckoutFacts> {
  const url = `${args.apiUrl}/v1/checkouts/${args.paymentId}`;
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } }).catch(
    (err: unknown) => fail(`Could not reach ${url}: ${(err as Error).message}`),
  );
  const body = (await res.json().catch(() => ({}))) as {
    workflowId?: string;
    pack?: string;
    credits?: number;
    amount?: number;
    currency?: string;
    sessionId?: string;
  };
  if (!res.ok) fail(`GET ${url} → ${res.status} ${JSON.stringify(body)}`);
  if (!body.sessionId || body.amount === undefined || !body.currency) {
    fail(
      `Checkout ${args.paymentId} has no Stripe session yet (status in ${JSON.stringify(body)}); ` +
        'wait for its checkoutUrl, or pass --session, --amount and --currency.',
    );
  }
  return {
    sessionId: body.sessionId,
    amount: body.amount,
    currency: body.currency,
    metadata: {
      ...(body.workflowId ? { workflowId: body.workflowId } : {}),
      ...(body.pack ? { pack: body.pack } : {}),
      ...(body.credits !== undefined ? { credits: String(body.credits) } : {}),
      amount: String(body.amount),
      currency: body.currency,
    },
  };
}

async function checkoutFacts(args: StripeSimulateArgs, config: Config): Promise<CheckoutFacts> {
  if (args.source.kind === 'flags') return args.source.facts;
  if (args.source.kind === 'api') return fromApi(args, args.source.token);
  if (config.databaseUrl) return fromDatabase(config.databaseUrl, args.paymentId);
  if (config.auth.jwtSecret) {
    const token = await mintToken(
      config.auth.jwtSecret,
      { sub: 'stripe-simulate', role: 'admin' },
      300,
    );
    return fromApi(args, token);
  }
  throw new UsageError(
    'cannot find the payment: pass --token, or --session/--amount/--currency, or set DATABASE_URL or AUTH_JWT_SECRET',
    STRIPE_SIMULATE_USAGE,
  );
}

loadLocalStackEnv();
const config = loadConfigOrExit();
try {
  const args = parseStripeSimulateArgs(process.argv.slice(2), {
    apiUrl: config.apiUrl,
    port: config.port,
  });
  const secret = required(
    config.stripe.webhookSecret,
    'STRIPE_WEBHOOK_SECRET',
    'to sign the event (npm start sets it; against another API, use its webhook secret)',
  );
  const facts = await checkoutFacts(args, config);
  const event = checkoutSessionEvent(args.paymentId, args.event, facts, {
    eventId: `evt_local_${randomBytes(12).toString('hex')}`,
    paymentIntentId:
      args.paymentIntent ?? facts.paymentIntentId ?? `pi_local_${randomBytes(12).toString('hex')}`,
    created: Math.floor(Date.now() / 1000),
  });
  const body = JSON.stringify(event);
  const signature = new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
    payload: body,
    secret,
  });
  const res = await fetch(args.webhookUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    body,
  }).catch((err: unknown) => fail(`Could not reach ${args.webhookUrl}: ${(err as Error).message}`));
  console.log(`${event.type} ${event.id} → ${res.status} ${await res.text()}`);
  if (!res.ok) process.exitCode = 1;
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`${err.message}\n\n${err.usage}`);
  process.exit(2);
}
