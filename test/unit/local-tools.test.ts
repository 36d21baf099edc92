// The local tools' command lines, and one run of each script against a stand-in API over HTTP.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSmsSignature } from '../../src/api/webhooks/sms.js';
import {
  UsageError,
  apiBaseUrl,
  checkoutSessionEvent,
  parseSmsCodeArgs,
  parseStripeSimulateArgs,
} from '../../scripts/local-tools.js';

const env = { apiUrl: undefined, port: 3000 };
const usageError = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).usage).toMatch(/^Usage: npm run/);
    return (err as UsageError).message;
  }
  throw new Error('expected a usage error');
};

describe('apiBaseUrl', () => {
  it('takes --url, then API_URL, then localhost:PORT', () => {
    expect(apiBaseUrl('https://api.example.com/', 'http://other', 3000, 'u')).toBe(
      'https://api.example.com',
    );
    expect(apiBaseUrl(undefined, 'http://staging:8080', 3000, 'u')).toBe('http://staging:8080');
    expect(apiBaseUrl(undefined, undefined, 4000, 'u')).toBe('http://localhost:4000');
  });

  it('refuses what is not an http(s) URL', () => {
    expect(
      usageError(() => apiBaseUrl('localhost:3000', undefined, 1, 'Usage: npm run x')),
    ).toMatch(/must be an http/);
    expect(usageError(() => apiBaseUrl('not a url', undefined, 1, 'Usage: npm run x'))).toMatch(
      /is not a URL/,
    );
  });
});

describe('sms:code arguments', () => {
  it('reads the verification id, an optional code and --url', () => {
    expect(
      parseSmsCodeArgs(['ver_1', '123456', '--url', 'https://api.example.com'], env, () => '0'),
    ).toEqual({
      verificationId: 'ver_1',
      code: '123456',
      webhookUrl: 'https://api.example.com/webhooks/sms',
    });
    expect(
      parseSmsCodeArgs(['ver_1'], { apiUrl: 'http://staging', port: 1 }, () => '654321'),
    ).toEqual({
      verificationId: 'ver_1',
      code: '654321',
      webhookUrl: 'http://staging/webhooks/sms',
    });
  });

  it('refuses a missing id, a bad code, an unknown flag and extra arguments', () => {
    expect(usageError(() => parseSmsCodeArgs([], env, () => '1'))).toMatch(/verification id/);
    expect(usageError(() => parseSmsCodeArgs(['ver_1', 'abc'], env, () => '1'))).toMatch(
      /4 to 10 digits/,
    );
    expect(usageError(() => parseSmsCodeArgs(['ver_1', '--nope'], env, () => '1'))).toMatch(/nope/);
    expect(usageError(() => parseSmsCodeArgs(['ver_1', '1234', 'x'], env, () => '1'))).toMatch(
      /unexpected argument "x"/,
    );
    expect(usageError(() => parseSmsCodeArgs(['ver_1', '--url'], env, () => '1'))).toMatch(/url/);
  });
});

describe('stripe:simulate arguments', () => {
  it('takes the payment from flags, without a database or an API lookup', () => {
    const args = parseStripeSimulateArgs(
      [
        'pay_abc',
        '--session',
        'cs_test_1',
        '--amount',
        '500',
        '--currency',
        'EUR',
        '--url',
        'http://api:3000',
      ],
      env,
    );
    expect(args).toMatchObject({
      paymentId: 'pay_abc',
      event: 'completed',
      webhookUrl: 'http://api:3000/webhooks/stripe',
      source: { kind: 'flags', facts: { sessionId: 'cs_test_1', amount: 500, currency: 'eur' } },
    });
  });

  it('asks the API with --token, else looks the payment up; an old full webhook --url still works', () => {
    expect(
      parseStripeSimulateArgs(['pay_abc', '--token', 't', '--event', 'expired'], env),
    ).toMatchObject({
      event: 'expired',
      apiUrl: 'http://localhost:3000',
      source: { kind: 'api', token: 't' },
    });
    expect(
      parseStripeSimulateArgs(['pay_abc', '--url', 'http://h:1/webhooks/stripe'], env),
    ).toMatchObject({ webhookUrl: 'http://h:1/webhooks/stripe', source: { kind: 'lookup' } });
  });

  it('refuses what it cannot use, saying what is wrong', () => {
    expect(usageError(() => parseStripeSimulateArgs([], env))).toMatch(/payment id/);
    expect(usageError(() => parseStripeSimulateArgs(['chk_1'], env))).toMatch(/not a payment id/);
    expect(usageError(() => parseStripeSimulateArgs(['pay_a', '--event', 'paid'], env))).toMatch(
      /--event: "paid" is not one of completed/,
    );
    expect(usageError(() => parseStripeSimulateArgs(['pay_a', '--amount', '5'], env))).toMatch(
      /missing --session, --currency/,
    );
    expect(
      usageError(() =>
        parseStripeSimulateArgs(
          ['pay_a', '--session', 'cs_1', '--amount', '5.5', '--currency', 'eur'],
          env,
        ),
      ),
    ).toMatch(/--amount/);
    expect(
      usageError(() =>
        parseStripeSimulateArgs(
          ['pay_a', '--session', 'x', '--amount', '5', '--currency', 'eur'],
          env,
        ),
      ),
    ).toMatch(/--session/);
  });
});

// Each case starts a TypeScript process; on a loaded machine that alone can take several seconds.
describe('the scripts against an API over HTTP', { timeout: 60_000 }, () => {
  let server: Server;
  let base: string;
  const seen: {
    url: string;
    headers: Record<string, string | string[] | undefined>;
    body: string;
  }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', headers: req.headers, body });
        if (req.method === 'GET' && req.url === '/v1/checkouts/pay_viaapi') {
          // What GET /v1/checkouts/{id} answers once the session is open.
          const ok = req.headers.authorization === 'Bearer admin-token-for-tools';
          res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end(
            JSON.stringify({
              id: 'pay_viaapi',
              workflowId: 'checkout-pay_viaapi',
              pack: 'small',
              credits: 100,
              amount: 500,
              currency: 'eur',
              status: 'open',
              sessionId: 'cs_test_viaapi',
            }),
          );
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"received":true}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Runs `tsx scripts/<name>.ts` with only the variables given (no DATABASE_URL). */
  function run(script: string, args: string[], vars: Record<string, string>) {
    const entry = fileURLToPath(new URL(`../../scripts/${script}`, import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
      env: {
        PATH: process.env['PATH'],
        // An empty data folder, so the local stack's env file is not read.
        CREDITFLOW_DATA_DIR: fileURLToPath(new URL('../fixtures-none', import.meta.url)),
        ...vars,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    return new Promise<{ code: number | null; out: string }>((resolve) =>
      child.once('exit', (code) => resolve({ code, out })),
    );
  }

  it('sms:code posts a signed code to --url', async () => {
    const secret = 'sms-secret-for-the-tools-test';
    const result = await run('sms-code.ts', ['ver_tools', '246810', '--url', base], {
      SMS_WEBHOOK_SECRET: secret,
    });
    expect(result).toMatchObject({ code: 0 });
    const request = seen.find((s) => s.url === '/webhooks/sms');
    expect(JSON.parse(request!.body)).toEqual({ verificationId: 'ver_tools', code: '246810' });
    expect(checkSmsSignature(secret, request!.body, String(request!.headers['x-signature']))).toBe(
      'valid',
    );
  });

  it('stripe:simulate posts a signed Checkout event to API_URL, without DATABASE_URL', async () => {
    const secret = 'whsec_tools_test';
    const result = await run(
      'stripe-simulate.ts',
      ['pay_tools1', '--session', 'cs_test_tools', '--amount', '500', '--currency', 'eur'],
      { STRIPE_WEBHOOK_SECRET: secret, API_URL: base },
    );
    expect(result).toMatchObject({ code: 0 });
    const request = seen.find((s) => s.url === '/webhooks/stripe');
    const event = new Stripe('sk_test_unused').webhooks.constructEvent(
      request!.body,
      String(request!.headers['stripe-signature']),
      secret,
    );
    expect(event.type).toBe('checkout.session.completed');
    expect(event.data.object).toMatchObject({
      id: 'cs_test_tools',
      client_reference_id: 'pay_tools1',
      amount_total: 500,
      currency: 'eur',
      payment_status: 'paid',
    });
  });

  it('stripe:simulate with --token reads the checkout from the API and posts its event', async () => {
    const secret = 'whsec_tools_test_api';
    const result = await run(
      'stripe-simulate.ts',
      ['pay_viaapi', '--token', 'admin-token-for-tools', '--url', base, '--event', 'expired'],
      { STRIPE_WEBHOOK_SECRET: secret },
    );
    expect(result).toMatchObject({ code: 0 });
    const request = seen.filter((s) => s.url === '/webhooks/stripe').at(-1);
    const event = new Stripe('sk_test_unused').webhooks.constructEvent(
      request!.body,
      String(request!.headers['stripe-signature']),
      secret,
    );
    expect(event.type).toBe('checkout.session.expired');
    expect(event.data.object).toMatchObject({
      id: 'cs_test_viaapi',
      client_reference_id: 'pay_viaapi',
      amount_total: 500,
      currency: 'eur',
      metadata: { paymentId: 'pay_viaapi', workflowId: 'checkout-pay_viaapi', pack: 'small' },
    });
  });

  it('stripe:simulate without any way to find the payment prints the usage and exits 2', async () => {
    const result = await run('stripe-simulate.ts', ['pay_tools2'], {
      STRIPE_WEBHOOK_SECRET: 'whsec_x',
    });
    expect(result.code).toBe(2);
    expect(result.out).toContain('cannot find the payment');
    expect(result.out).toContain('Usage: npm run stripe:simulate');
  });
});

describe('checkoutSessionEvent', () => {
  it('names the payment in client_reference_id and metadata', () => {
    const event = checkoutSessionEvent(
      'pay_x',
      'async-failed',
      {
        sessionId: 'cs_1',
        amount: 900,
        currency: 'usd',
        metadata: { workflowId: 'checkout-pay_x' },
      },
      { eventId: 'evt_1', paymentIntentId: 'pi_1', created: 1 },
    );
    expect(event.type).toBe('checkout.session.async_payment_failed');
    expect(event.data.object).toMatchObject({
      client_reference_id: 'pay_x',
      metadata: { paymentId: 'pay_x', workflowId: 'checkout-pay_x' },
      payment_status: 'unpaid',
      payment_intent: 'pi_1',
    });
  });
});
