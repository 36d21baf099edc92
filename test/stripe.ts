// Stripe for tests: the Stripe double (src/stack/stripe-double.ts) on the run's stripe-mock, and
// signed webhook deliveries with this run's webhook secret.
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { StripeDouble, stripeSignature } from '../src/stack/stripe-double.js';

export * from '../src/stack/stripe-double.js';

export const TEST_WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('hex')}`;

/** A Stripe double in front of the test run's stripe-mock. */
export function startStripeDouble(): Promise<StripeDouble> {
  return StripeDouble.start(inject('stripeApiBase'));
}

/** The Stripe-Signature header for a body, by stripe-node's own test helper. */
export function signatureFor(
  body: string,
  options: { secret?: string; timestamp?: number } = {},
): string {
  return stripeSignature(body, options.secret ?? TEST_WEBHOOK_SECRET, options.timestamp);
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
