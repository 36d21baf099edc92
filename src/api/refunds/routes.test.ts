// The refund routes' own contract, without a worker: what is refused before anything starts, and
// how refunds of every kind are read and listed (rows of kind `stripe` included).
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  adminToken,
  createCustomer,
  customerToken,
  jsonRequest,
  uniqueId,
  useTestApp,
} from '../../../test/helpers.js';
import { workflowIds } from '../../shared.js';
import { refundIdFor } from './routes.js';

const bench = useTestApp('refund-routes', { refundWindowDays: 3 }, { checkLedger: true });

const post = (token: string, body: unknown, key: string | null = uniqueId('k')) =>
  bench.app.request(
    '/v1/refunds',
    jsonRequest('POST', body, token, key === null ? {} : { 'idempotency-key': key }),
  );

const get = (token: string, path: string) =>
  bench.app.request(path, { headers: { authorization: `Bearer ${token}` } });

const errorOf = async (res: Response) =>
  ((await res.json()) as { error: { code: string; message: string } }).error;

/** A payment row of the customer's, `ageDays` old, in `status` (no ledger entry needed). */
async function payment(customerId: string, status: string, ageDays = 0) {
  const id = `pay_${randomBytes(12).toString('hex')}`;
  await bench.db.sql`
    insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status, created_at)
    values (${id}, ${workflowIds.checkout(id)}, ${customerId}, 'small', 100, 500, 'eur', ${status},
            now() - make_interval(days => ${ageDays}))`;
  return id;
}

describe('POST /v1/refunds refuses before anything starts', () => {
  it('a body that is not one target with a reason, or no Idempotency-Key: 400 naming the problem', async () => {
    const customer = await createCustomer(bench.db);
    const token = await customerToken(customer.id);
    const paymentId = await payment(customer.id, 'expired');
    const cases: Array<[unknown, string | null, RegExp]> = [
      [{ paymentId, reason: 'x' }, null, /Idempotency-Key header is required/],
      [{ reason: 'x' }, uniqueId('k'), /exactly one of paymentId, verificationId or orderId/],
      [
        { paymentId, orderId: 'ord_1', reason: 'x' },
        uniqueId('k'),
        /exactly one of paymentId, verificationId or orderId/,
      ],
      [{ itemId: randomBytes(16).toString('hex'), reason: 'x' }, uniqueId('k'), /itemId/],
      [{ paymentId }, uniqueId('k'), /reason: a reason is required/],
      [{ paymentId, reason: 'a\u0000b' }, uniqueId('k'), /control characters/],
      [{ paymentId, reason: 'x', credits: 0 }, uniqueId('k'), /credits: must be at least 1/],
      [{ paymentId, reason: 'x', credits: 1.5 }, uniqueId('k'), /credits: must be a whole number/],
      [{ paymentId: 'pay_%00', reason: 'x' }, uniqueId('k'), /paymentId: must be a payment id/],
      [{ paymentId, reason: 'x', customerId: customer.id }, uniqueId('k'), /customerId/],
    ];
    for (const [body, key, message] of cases) {
      const res = await post(token, body, key);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((await errorOf(res)).message).toMatch(message);
    }
    expect(await bench.db.sql`select id from refunds where customer_id = ${customer.id}`).toEqual(
      [],
    );
  });

  it('a customer: unknown or another’s payment 404, past the window 403, a payment not credited 422, a purchase 403', async () => {
    const customer = await createCustomer(bench.db);
    const other = await createCustomer(bench.db);
    const token = await customerToken(customer.id);
    const theirs = await payment(other.id, 'expired');

    const unknown = await post(token, { paymentId: 'pay_unknown', reason: 'x' });
    expect(unknown.status).toBe(404);
    expect((await errorOf(unknown)).code).toBe('payment_not_found');
    const another = await post(token, { paymentId: theirs, reason: 'x' });
    expect(another.status).toBe(404);
    expect(await another.text()).not.toContain(other.id);

    // This app's window is 3 days.
    const old = await payment(customer.id, 'expired', 4);
    const late = await post(token, { paymentId: old, reason: 'x' });
    expect(late.status).toBe(403);
    expect(await errorOf(late)).toMatchObject({ code: 'refund_window_closed' });
    expect((await errorOf(await post(token, { paymentId: old, reason: 'x' }))).message).toContain(
      'within 3 days',
    );

    const unpaid = await payment(customer.id, 'expired', 1);
    const notCredited = await post(token, { paymentId: unpaid, reason: 'x' });
    expect(notCredited.status).toBe(422);
    expect((await errorOf(notCredited)).code).toBe('refund_not_allowed');

    const purchase = await post(token, { orderId: 'ord_x', reason: 'x' });
    expect(purchase.status).toBe(403);
    expect((await errorOf(purchase)).code).toBe('refund_not_allowed');

    // Nothing was started or recorded for any of them.
    expect(await bench.db.sql`select id from refunds where customer_id = ${customer.id}`).toEqual(
      [],
    );
  });

  it('an admin: unknown targets are 404 with their own code', async () => {
    const admin = await adminToken();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ paymentId: 'pay_nothing' }, 'payment_not_found'],
      [{ verificationId: `ver_${'b'.repeat(32)}` }, 'verification_not_found'],
      [{ orderId: 'ord_nothing' }, 'order_not_found'],
    ];
    for (const [target, code] of cases) {
      const res = await post(admin, { ...target, reason: 'x' });
      expect(res.status).toBe(404);
      expect((await errorOf(res)).code).toBe(code);
    }
  });

  it('refund ids come from the caller and the key', () => {
    expect(refundIdFor('a', 'k')).toBe(refundIdFor('a', 'k'));
    expect(refundIdFor('a', 'k')).not.toBe(refundIdFor('b', 'k'));
    expect(refundIdFor('a', 'k')).toMatch(/^rfd_[0-9a-f]{32}$/);
  });
});

describe('GET /v1/refunds and /v1/refunds/{id}', () => {
  it('reads and lists refunds of every kind from the table once closed; only their customer and admins see them', async () => {
    const customer = await createCustomer(bench.db);
    const other = await createCustomer(bench.db);
    const paymentId = await payment(customer.id, 'expired');
    // A row as the Stripe-side refund flow writes it.
    const id = `stripe-${paymentId}`;
    await bench.db.sql`
      insert into refunds (id, workflow_id, kind, customer_id, payment_id, credits, amount, currency,
                           debt_credits, reason, requested_by, status)
      values (${id}, ${workflowIds.stripeRefund(paymentId)}, 'stripe', ${customer.id}, ${paymentId},
              100, 500, 'eur', 20, 'refunded at Stripe', 'stripe', 'refunded')`;
    const expected = {
      id,
      workflowId: `refund-stripe-${paymentId}`,
      kind: 'stripe',
      status: 'refunded',
      credits: 100,
      amount: 500,
      currency: 'eur',
      reason: 'refunded at Stripe',
      paymentId,
      debtCredits: 20,
    };
    const own = await customerToken(customer.id);
    const one = await get(own, `/v1/refunds/${id}`);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject(expected);
    const list = await get(own, `/v1/refunds?paymentId=${paymentId}`);
    expect(((await list.json()) as { refunds: unknown[] }).refunds).toMatchObject([expected]);
    const admin = await adminToken();
    const byAdmin = await get(admin, `/v1/refunds?paymentId=${paymentId}`);
    expect(((await byAdmin.json()) as { refunds: unknown[] }).refunds).toMatchObject([expected]);

    const stranger = await customerToken(other.id);
    const hidden = await get(stranger, `/v1/refunds/${id}`);
    expect(hidden.status).toBe(404);
    expect(await hidden.text()).not.toContain(customer.id);
    const none = await get(stranger, `/v1/refunds?paymentId=${paymentId}`);
    expect(await none.json()).toEqual({ refunds: [] });
    // Without a payment: the caller's own refunds.
    const mine = await get(own, '/v1/refunds');
    expect(((await mine.json()) as { refunds: { id: string }[] }).refunds.map((r) => r.id)).toEqual(
      [id],
    );

    expect((await get(own, '/v1/refunds/rfd_unknown')).status).toBe(404);
    expect((await get(own, '/v1/refunds/has%20space')).status).toBe(400);
  });
});
