// Property-based: whatever a caller sends to any route of the OpenAPI document (and to the two
// webhooks), the answer is never a 5xx, and every refusal has the error shape.
import type { Client } from '@temporalio/client';
import fc from 'fast-check';
import { sign } from 'hono/jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/api/app.js';
import { signSmsBody } from '../src/api/webhooks/sms.js';
import type { Database } from '../src/db/client.js';
import { createLogger } from '../src/logger.js';
import {
  JWT_SECRET,
  SMS_SECRET,
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';
import { TEST_WEBHOOK_SECRET, signatureFor } from './stripe.js';

interface Operation {
  key: string;
  method: string;
  path: string;
  pathParams: string[];
  queryParams: string[];
  bodyFields: string[];
  hasBody: boolean;
}

let db: Database;
let temporal: Client;
let app: App;
let operations: Operation[];
let tokens: string[];

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
  // No worker polls this queue: a request that does pass validation starts nothing that runs.
  app = testApp(db, temporal, uniqueId('input-properties'), {
    stripeWebhookSecret: TEST_WEBHOOK_SECRET,
    // Fuzzed Stripe events are flagged with an alert each; this file checks answers, not logs.
    logger: createLogger({ level: 'silent' }),
  });
  const doc = (await (await app.request('/openapi.json')).json()) as {
    paths: Record<
      string,
      Record<
        string,
        {
          parameters?: { in: string; name: string }[];
          requestBody?: { content: Record<string, { schema: { $ref?: string } }> };
        }
      >
    >;
    components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
  };
  const fieldsOf = (schema: { $ref?: string; properties?: Record<string, unknown> }) => {
    const resolved = schema.$ref
      ? doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')]
      : schema;
    return Object.keys(resolved?.properties ?? {});
  };
  operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => {
      const params = op.parameters ?? [];
      const json = op.requestBody?.content['application/json']?.schema;
      return {
        key: `${method.toUpperCase()} ${path}`,
        method: method.toUpperCase(),
        path,
        pathParams: params.filter((p) => p.in === 'path').map((p) => p.name),
        queryParams: params.filter((p) => p.in === 'query').map((p) => p.name),
        bodyFields: json ? fieldsOf(json) : [],
        hasBody: op.requestBody !== undefined,
      };
    }),
  );
  const customer = await createCustomer(db);
  tokens = [await adminToken(), await customerToken(customer.id)];
});

afterAll(async () => {
  await temporal?.connection.close();
  await db?.close();
});

/** Strings people and attackers send: control characters, escapes, injections, huge, unicode. */
const nasty = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ maxLength: 20 }),
  fc.constantFrom(
    '%',
    '%25',
    '%zz',
    '%00',
    '%2500',
    '%ED%A0%80',
    '\u0000',
    'a\u0000b',
    '\ud800',
    "x' or 1=1--",
    '../../etc/passwd',
    '275760-09-13',
    '-000001-01-01',
    '+275760-09-13T00:00:00Z',
    '9'.repeat(40),
    '-1',
    '1e309',
    'NaN',
    '00000000-0000-0000-0000-000000000000',
    'x'.repeat(5000),
    '<email>',
    'null',
    'pay_unknown',
    'ver_00000000000000000000000000000000',
  ),
);

/** Any JSON value, with the nasty strings inside. */
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    nasty,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constantFrom(2 ** 53 + 1, -(2 ** 63), 1e308),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nasty, tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** Lone surrogate halves cannot be percent-encoded; the raw `%ED%A0%80` sample covers them. */
const wellFormed = (value: string) =>
  value.replace(
    /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    '\ufffd',
  );

/** Encodes some values for the URL and sends others raw (malformed escapes included). */
const urlPart = fc
  .tuple(nasty, fc.boolean())
  .map(([value, raw]) =>
    raw ? value.replace(/[/?#\s]/g, '') || '%' : encodeURIComponent(wellFormed(value)),
  );

async function expectNoServerError(res: Response, what: string) {
  expect(res.status, `${what} answered ${res.status}`).toBeLessThan(500);
  if (res.headers.get('content-type')?.includes('text/event-stream')) {
    await res.body?.cancel();
    return;
  }
  const text = await res.text();
  if (res.status >= 400) {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    expect(body.error?.code, `${what}: ${text.slice(0, 200)}`).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(typeof body.error?.message, what).toBe('string');
  }
}

/** A header value fetch accepts: bytes only, no NUL, CR or LF, no edge whitespace. */
const headerSafe = (value: string) =>
  [...value]
    .filter((ch) => ch > '\u0000' && ch <= '\u00ff' && ch !== '\r' && ch !== '\n')
    .join('')
    .trim() || 'k';

describe('no input makes any route answer 5xx', () => {
  it('walks every route of the OpenAPI document with arbitrary params, query and body', async () => {
    expect(operations.length).toBeGreaterThan(10);
    for (const op of operations) {
      await fc.assert(
        fc.asyncProperty(
          fc.array(urlPart, { minLength: op.pathParams.length, maxLength: op.pathParams.length }),
          fc.array(fc.tuple(fc.constantFrom(...op.queryParams, 'extra'), urlPart), {
            maxLength: 4,
          }),
          fc.oneof(
            jsonValue,
            fc
              .tuple(...op.bodyFields.map(() => jsonValue))
              .map((values) => Object.fromEntries(op.bodyFields.map((k, i) => [k, values[i]]))),
            fc.constantFrom('{"a":', 'not json', '', '\u0000'),
          ),
          fc.constantFrom(...tokens),
          fc.option(nasty),
          async (pathValues, query, body, token, key) => {
            let i = 0;
            const path = op.path.replace(/\{\w+\}/g, () => pathValues[i++] ?? 'x');
            const qs = query.map(([k, v]) => `${k}=${v}`).join('&');
            const url = `${path}${qs ? `?${qs}` : ''}`;
            const res = await app.request(url, {
              method: op.method,
              headers: {
                authorization: `Bearer ${token}`,
                'content-type': 'application/json',
                ...(key === null ? {} : { 'idempotency-key': headerSafe(key) }),
              },
              ...(op.method === 'GET'
                ? {}
                : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
            });
            await expectNoServerError(res, `${op.key} as ${url.slice(0, 120)}`);
          },
        ),
        { numRuns: 30 },
      );
    }
  });

  it('refuses arbitrary and arbitrarily signed bearer tokens with 401, never 500', async () => {
    const claims = fc.record(
      {
        sub: jsonValue,
        role: fc.oneof(fc.constantFrom('customer', 'admin'), jsonValue),
        exp: fc.oneof(fc.integer(), jsonValue),
        iat: fc.oneof(fc.integer(), jsonValue),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          nasty.map((s) => ({ raw: s })),
          claims,
        ),
        async (input) => {
          const token =
            'raw' in input
              ? headerSafe(input.raw)
              : await sign(input as Parameters<typeof sign>[0], JWT_SECRET, 'HS256');
          for (const path of ['/v1/wallet', '/v1/notifications', '/v1/customers/someone']) {
            const res = await app.request(path, {
              headers: { authorization: headerSafe(`Bearer ${token}`) },
            });
            await expectNoServerError(res, `${path} with ${JSON.stringify(input).slice(0, 120)}`);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('the signed webhooks take arbitrary signed bodies without a 5xx', async () => {
    const stripeTypes = fc.constantFrom(
      'checkout.session.completed',
      'checkout.session.async_payment_succeeded',
      'checkout.session.async_payment_failed',
      'checkout.session.expired',
      'payment_intent.succeeded',
      'charge.refunded',
      'charge.dispute.created',
      'customer.created',
    );
    const stripeEvent = fc.oneof(
      jsonValue,
      fc.record({
        id: fc.oneof(nasty, fc.constant(`evt_${uniqueId('p')}`)),
        object: fc.constant('event'),
        type: stripeTypes,
        data: fc.record({
          object: fc.dictionary(
            fc.constantFrom(
              'id',
              'client_reference_id',
              'metadata',
              'amount_total',
              'amount',
              'currency',
              'payment_status',
              'payment_intent',
              'status',
            ),
            jsonValue,
          ),
        }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(stripeEvent, async (event) => {
        const body = JSON.stringify(event) ?? 'null';
        const res = await app.request('/webhooks/stripe', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'stripe-signature': signatureFor(body) },
          body,
        });
        await expectNoServerError(res, `stripe ${body.slice(0, 120)}`);
      }),
      { numRuns: 150 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          jsonValue,
          fc.record(
            { verificationId: jsonValue, providerRef: jsonValue, code: jsonValue },
            { requiredKeys: [] },
          ),
        ),
        async (payload) => {
          const body = JSON.stringify(payload) ?? 'null';
          const res = await app.request('/webhooks/sms', {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'x-signature': signSmsBody(SMS_SECRET, body),
            },
            body,
          });
          await expectNoServerError(res, `sms ${body.slice(0, 120)}`);
        },
      ),
      { numRuns: 150 },
    );
  });
});
