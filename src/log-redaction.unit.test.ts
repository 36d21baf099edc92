// What the logger writes: credentials, signatures, e-mail addresses and card data are censored by
// field and masked by value, whatever the level, field or message they come in.
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import { maskSecrets } from './log-redaction.js';
import { temporalLogger } from './worker-logging.js';

function capture() {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'trace',
    destination: { write: (line: string) => void lines.push(line) },
  });
  return { logger, text: () => lines.join(''), lines };
}

const EMAIL = 'jane.doe+billing@example.com';
const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMiLCJyb2xlIjoiY3VzdG9tZXIifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
const STRIPE_KEY = 'sk_live_51HxyzABCdef0123456789';
const WEBHOOK_SECRET = 'whsec_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==';
const SIGNATURE =
  't=1764290000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd';
const CARD = '4000 0566 5566 5556';

describe('fields', () => {
  it('censors credential headers wherever the request is logged', () => {
    const { logger, text } = capture();
    const headers = {
      authorization: `Bearer ${JWT}`,
      cookie: 'session=abc123def',
      'stripe-signature': SIGNATURE,
      'x-signature': 't=1764290000,sha256=00ff00ff00ff00ff00ff',
      'content-type': 'application/json',
    };
    logger.debug({ headers }, 'request');
    logger.debug({ req: { headers } }, 'request');
    logger.debug({ http: { req: { headers } } }, 'request');
    const out = text();
    for (const secret of [JWT, 'abc123def', SIGNATURE, '00ff00ff00ff']) {
      expect(out).not.toContain(secret);
    }
    expect(out).toContain('application/json');
    expect(out.match(/"authorization":"\[redacted\]"/g)).toHaveLength(3);
  });

  it('censors e-mail, secret and card fields at any of the first three levels', () => {
    const { logger, lines } = capture();
    logger.info(
      {
        email: EMAIL,
        customer: { email: EMAIL, id: 'c1' },
        config: { stripe: { secretKey: STRIPE_KEY, webhookSecret: 'plain-secret-value' } },
        token: 'opaque-token-value',
        payment: {
          payment_method_details: { card: { last4: '4242', number: CARD } },
          card: { brand: 'visa', last4: '4242' },
        },
        paymentMethod: { last4: '4242', brand: 'visa' },
      },
      'event',
    );
    const line = JSON.parse(lines[0]!) as Record<string, Record<string, unknown>>;
    expect(line['email']).toBe('[redacted]');
    expect(line['customer']).toEqual({ email: '[redacted]', id: 'c1' });
    expect(line['config']).toEqual({
      stripe: { secretKey: '[redacted]', webhookSecret: '[redacted]' },
    });
    expect(line['token']).toBe('[redacted]');
    expect(line['payment']).toEqual({ payment_method_details: '[redacted]', card: '[redacted]' });
    expect(line['paymentMethod']).toEqual({ last4: '[redacted]', brand: 'visa' });
  });
});

describe('values (the safety net for fields no path names)', () => {
  it('masks secrets in the message, its arguments, any field and error texts', () => {
    const { logger, text, lines } = capture();
    logger.info(`customer ${EMAIL} signed in with Bearer ${JWT}`);
    logger.warn({ detail: `key ${STRIPE_KEY} and ${WEBHOOK_SECRET}` }, 'config %s', EMAIL);
    logger.error(
      { err: new Error(`duplicate key (email)=(${EMAIL}) for card ${CARD}`), note: SIGNATURE },
      'failed',
    );
    logger.debug({ url: `/v1/customers/${encodeURIComponent(EMAIL)}?email=${EMAIL}` }, 'request');
    const out = text();
    for (const secret of [EMAIL, JWT, STRIPE_KEY, WEBHOOK_SECRET, SIGNATURE, CARD]) {
      expect(out).not.toContain(secret);
    }
    expect(out).not.toContain(encodeURIComponent(EMAIL));
    const error = JSON.parse(lines[2]!) as { err: { type: string; message: string } };
    expect(error.err.type).toBe('Error');
    expect(error.err.message).toBe('duplicate key (email)=([email]) for card [card]');
  });

  it('leaves ids, amounts, timestamps and other numbers alone', () => {
    const plain = [
      'verification 3f2b8c1e-9a4d-4e5f-8a7b-1c2d3e4f5a6b settled',
      'amount 1764290000001 credits',
      'pi_test_4242abcd cs_test_123 evt_test_9f',
      'balance 500, price 50, at 2026-11-28T00:35:46.000Z',
    ];
    for (const text of plain) expect(maskSecrets(text)).toBe(text);
  });

  it('masks each kind of secret-looking value', () => {
    expect(maskSecrets(`to ${EMAIL}.`)).toBe('to [email].');
    expect(maskSecrets(`Authorization: Bearer ${JWT}`)).toBe('Authorization: Bearer [redacted]');
    expect(maskSecrets(`token=${JWT}`)).toBe('token=[jwt]');
    expect(maskSecrets(`${STRIPE_KEY} rk_test_abc123`)).toBe('[stripe-key] [stripe-key]');
    expect(maskSecrets(WEBHOOK_SECRET)).toBe('[webhook-secret]');
    expect(maskSecrets(`Stripe-Signature: ${SIGNATURE}`)).toBe('Stripe-Signature: [signature]');
    expect(maskSecrets(`cards ${CARD} 4242-4242-4242-4242 4242424242424242`)).toBe(
      'cards [card] [card] [card]',
    );
  });
});

describe('the worker', () => {
  it("masks the Temporal SDK's lines routed into pino like any other", () => {
    const { logger, text } = capture();
    temporalLogger(logger).warn(`Activity failed for ${EMAIL}`, {
      sdkComponent: 'activity',
      error: new Error(`Stripe refused ${STRIPE_KEY}: card ${CARD}`),
      headers: { authorization: `Bearer ${JWT}` },
    });
    const out = text();
    for (const secret of [EMAIL, STRIPE_KEY, CARD, JWT]) expect(out).not.toContain(secret);
    expect(out).toContain('Activity failed for [email]');
  });
});
