// Body caps: an oversized body is refused with 413 before it is read, on the unauthenticated
// webhooks as on the API, whether it announces its size or streams it.
import { beforeAll, describe, expect, it } from 'vitest';
import { adminToken, useTestApp } from '../../test/helpers.js';
import { TEST_WEBHOOK_SECRET } from '../../test/stripe.js';
import { BODY_LIMITS } from './app.js';

const t = useTestApp('limits', { stripeWebhookSecret: TEST_WEBHOOK_SECRET });

let admin: string;

beforeAll(async () => {
  admin = await adminToken();
});

const FIFTY_MB = 50 * 1024 * 1024;

/** A 50 MB body produced on demand, counting how much of it the server pulled. */
function hugeStream() {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  const counter = { pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (counter.pulled >= FIFTY_MB) {
        controller.close();
        return;
      }
      counter.pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return { stream, counter };
}

const routes: [string, string, number, Record<string, string>][] = [
  ['/webhooks/stripe', 'POST', BODY_LIMITS.stripeWebhook, { 'stripe-signature': 't=1,v1=00' }],
  ['/webhooks/sms', 'POST', BODY_LIMITS.smsWebhook, { 'x-signature': 't=1,sha256=00' }],
  ['/v1/admin/adjustments', 'POST', BODY_LIMITS.api, { 'idempotency-key': 'big' }],
  ['/v1/customers', 'POST', BODY_LIMITS.api, {}],
];

async function expect413(res: Response) {
  expect(res.status).toBe(413);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe('payload_too_large');
  expect(body.error.message).toMatch(/bytes/);
}

describe('bodies above the cap are refused with 413', () => {
  it.each(routes)(
    '%s: a streamed 50 MB body is cut off after the cap, not read whole',
    async (path, method, limit, headers) => {
      const { stream, counter } = hugeStream();
      const res = await t.app.request(path, {
        method,
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${admin}`,
          ...headers,
        },
        body: stream,
        duplex: 'half',
      });
      await expect413(res);
      // The stream may be a few chunks ahead of the check, never far past the cap.
      expect(counter.pulled).toBeLessThan(limit + 4 * 64 * 1024);
    },
  );

  it.each(routes)(
    '%s: a body announcing 50 MB in Content-Length is refused unread',
    async (path, method, _limit, headers) => {
      const { stream, counter } = hugeStream();
      const res = await t.app.request(
        new Request(`http://localhost${path}`, {
          method,
          headers: {
            'content-type': 'application/json',
            'content-length': String(FIFTY_MB),
            authorization: `Bearer ${admin}`,
            ...headers,
          },
          body: stream,
          duplex: 'half',
        }),
      );
      await expect413(res);
      expect(counter.pulled).toBeLessThan(4 * 64 * 1024);
    },
  );

  it('a body just under the cap reaches the route (which then judges it)', async () => {
    const body = JSON.stringify({ email: 'x'.repeat(BODY_LIMITS.api - 100) });
    const res = await t.app.request('/v1/customers', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_request' } });
  });
});
