// verificationPurchase end to end: HTTP API → Temporal → worker → ledger, provider and notifications.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminToken,
  createCustomer,
  customerToken,
  deliveredNotifications,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  uniqueId,
} from './helpers.js';
import { verificationIdFor } from '../src/api/verifications/routes.js';
import { searchAttributes } from '../src/shared.js';
import {
  verificationHarness,
  type Verification,
  type VerificationHarness,
} from './verification-harness.js';

let h: VerificationHarness;

beforeAll(async () => {
  h = await verificationHarness('verify');
});

afterAll(async () => {
  await expectLedgerConsistent(h.db);
  await h.close();
});

async function fundedCustomer(amount = 100) {
  const customer = await createCustomer(h.db);
  if (amount > 0) await fund(h.ledger, customer.id, amount);
  return customer;
}

async function started(res: Response): Promise<{ id: string; workflowId: string; status: string }> {
  expect(res.status, await res.clone().text()).toBe(202);
  return (await res.json()) as { id: string; workflowId: string; status: string };
}

/** What the customer was told, once the outbox delivered it. */
async function notificationsOf(customerId: string) {
  return deliveredNotifications(h.db, customerId);
}

describe('buying a verification', () => {
  it('debits the price, rents a number and completes when the code arrives', async () => {
    const customer = await fundedCustomer(100);
    const { id, workflowId } = await started(await h.buy(customer.id, { timeoutSeconds: 60 }));
    expect(workflowId).toBe(`verification-${id}`);
    expect(await h.ledger.walletBalance(customer.id)).toBe(50);

    const active = await h.waitFor(customer.id, id, ['active']);
    expect(active.phoneNumber).toMatch(/^\+1555\d{7}$/);
    expect((await h.deliverCode(id, '424242')).status).toBe(200);

    const done = await h.waitFor(customer.id, id, ['completed']);
    expect(done).toMatchObject({
      status: 'completed',
      code: '424242',
      price: 50,
      phoneNumber: active.phoneNumber,
    });
    expect(done.refundReason).toBeUndefined();
    expect(await h.entryTypes(id)).toEqual(['verification_purchase']);
    expect(await h.ledger.walletBalance(customer.id)).toBe(50);
    expect((await notificationsOf(customer.id)).map((n) => n.kind)).toEqual(['credits_deducted']);
  });

  it('refunds exactly once on timeout, with history, notifications and the number released', async () => {
    const customer = await fundedCustomer(100);
    const { id } = await started(await h.buy(customer.id, { timeoutSeconds: 1 }));
    const refunded = await h.waitFor(customer.id, id, ['refunded']);
    expect(refunded.refundReason).toBe('timeout');
    expect(refunded.code).toBeUndefined();
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    expect(await h.entryTypes(id)).toEqual(['verification_purchase', 'verification_refund']);
    expect(h.sms.released.has(`sim_${id}`)).toBe(true);
    const description = await h.temporal.workflow.getHandle(`verification-${id}`).describe();
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('refunded');
    expect(description.typedSearchAttributes.get(searchAttributes.customerId)).toBe(customer.id);

    const history = await h.app.request('/v1/wallet/transactions?limit=2', {
      headers: { authorization: `Bearer ${await customerToken(customer.id)}` },
    });
    const { items } = (await history.json()) as {
      items: Array<{ type: string; amount: number; balanceAfter: number; description: string }>;
    };
    expect(items).toEqual([
      expect.objectContaining({ type: 'verification_refund', amount: 50, balanceAfter: 100 }),
      expect.objectContaining({
        type: 'verification_purchase',
        amount: -50,
        balanceAfter: 50,
        description: `${h.service} verification (US)`,
      }),
    ]);

    const notes = await notificationsOf(customer.id);
    expect(notes.map((n) => n.kind)).toEqual(['credits_deducted', 'credits_refunded']);
    expect(notes[1]).toMatchObject({
      amount: '50',
      balance_after: '100',
      data: expect.objectContaining({ reason: 'timeout' }),
    });

    // A code that arrives after the refund changes nothing.
    const late = await h.deliverCode(id, '111111');
    expect(late.status).toBe(200);
    expect(await late.json()).toEqual({ delivered: false, status: 'refunded' });
    expect(await h.entryTypes(id)).toHaveLength(2);
  });

  it('refunds on cancel, and refuses a second cancel with 409', async () => {
    const customer = await fundedCustomer(100);
    const { id } = await started(await h.buy(customer.id, { timeoutSeconds: 120 }));
    await h.waitFor(customer.id, id, ['active']);
    const res = await h.cancel(customer.id, id);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'refunded', refundReason: 'cancelled' });
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    const again = await h.cancel(customer.id, id);
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: { code: 'verification_closed' } });
    expect(await h.entryTypes(id)).toEqual(['verification_purchase', 'verification_refund']);
  });

  it('refunds when the provider has no number', async () => {
    const customer = await fundedCustomer(100);
    const { id } = await started(await h.buy(customer.id, { service: h.failingService }));
    const refunded = await h.waitFor(customer.id, id, ['refunded']);
    expect(refunded.refundReason).toBe('provider_failed');
    expect(refunded.phoneNumber).toBeUndefined();
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    expect((await notificationsOf(customer.id)).map((n) => n.kind)).toEqual([
      'credits_deducted',
      'credits_refunded',
    ]);
  });

  it('refunds and releases by reference a number whose rent answer was lost', async () => {
    const customer = await fundedCustomer(100);
    const { id } = await started(await h.buy(customer.id, { service: h.lostService }));
    const refunded = await h.waitFor(customer.id, id, ['refunded'], 30_000);
    expect(refunded.refundReason).toBe('provider_failed');
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    // The provider did rent it; we never learnt the reference, so it is released by ours.
    expect(h.sms.released.has(`sim_${id}`)).toBe(true);
  });

  it('rents nothing to release when the provider refuses', async () => {
    const customer = await fundedCustomer(100);
    const { id } = await started(await h.buy(customer.id, { service: h.failingService }));
    await h.waitFor(customer.id, id, ['refunded']);
    expect(h.sms.released.has(`sim_${id}`)).toBe(false);
  });

  it('refuses with 422 insufficient_credits, debits nothing and rents no number', async () => {
    const customer = await fundedCustomer(10);
    const key = uniqueId('poor');
    const res = await h.buy(customer.id, {}, key);
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('insufficient_credits');
    expect(body.error.message).toMatch(/short by 40/);
    expect(await h.ledger.walletBalance(customer.id)).toBe(10);
    const [count] = await h.db.sql<{ n: string }[]>`
      select count(*) as n from entries e join postings p on p.entry_id = e.id
      join accounts a on a.id = p.account_id where a.customer_id = ${customer.id} and e.type <> 'adjustment'`;
    expect(Number(count!.n)).toBe(0);
    const id = verificationIdFor(customer.id, key);
    expect([...h.sms.rentals.values()].filter((r) => r.verificationId === id)).toEqual([]);
    const stored = await h.get(customer.id, id);
    expect(stored).toMatchObject({ status: 'failed', error: { code: 'insufficient_credits' } });
  });

  it('completes once when the same code is delivered several times at once', async () => {
    const customer = await fundedCustomer(100);
    const { id } = await started(await h.buy(customer.id, { timeoutSeconds: 60 }));
    await h.waitFor(customer.id, id, ['active']);
    const answers = await Promise.all(Array.from({ length: 5 }, () => h.deliverCode(id, '777777')));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    await h.waitFor(customer.id, id, ['completed']);
    expect(await h.entryTypes(id)).toEqual(['verification_purchase']);
    const cancel = await h.cancel(customer.id, id);
    expect(cancel.status).toBe(409);
    expect(await h.ledger.walletBalance(customer.id)).toBe(50);
  });

  it('returns the same verification for a retried POST and 409 for a key reused with another body', async () => {
    const customer = await fundedCustomer(100);
    const key = uniqueId('retry');
    const first = await started(await h.buy(customer.id, { timeoutSeconds: 60 }, key));
    const second = await started(await h.buy(customer.id, { timeoutSeconds: 60 }, key));
    expect(second.id).toBe(first.id);
    const other = await h.buy(customer.id, { timeoutSeconds: 30 }, key);
    expect(other.status).toBe(409);
    expect(await h.ledger.walletBalance(customer.id)).toBe(50);
    await h.cancel(customer.id, first.id);
  });
});

describe('operator cancellation', () => {
  it('refunds when an operator cancels the workflow from Temporal', async () => {
    const customer = await fundedCustomer(100);
    const { id, workflowId } = await started(await h.buy(customer.id, { timeoutSeconds: 120 }));
    await h.waitFor(customer.id, id, ['active']);
    await h.temporal.workflow.getHandle(workflowId).cancel();
    const final = await h.waitFor(customer.id, id, ['refunded']);
    expect(final.refundReason).toBe('cancelled');
    expect(await h.entryTypes(id)).toEqual(['verification_purchase', 'verification_refund']);
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
  });
});

describe('prices', () => {
  it('lists prices and lets admins change one, which new purchases then pay', async () => {
    const admin = await adminToken();
    const customer = await fundedCustomer(100);
    const list = await h.app.request('/v1/prices', {
      headers: { authorization: `Bearer ${await customerToken(customer.id)}` },
    });
    const { items } = (await list.json()) as {
      items: Array<{ service: string; country: string; price: number }>;
    };
    expect(items).toContainEqual({ service: h.service, country: 'US', price: 50 });
    const service = `${h.service}-x`;
    const put = await h.app.request(
      `/v1/admin/prices/${service}/US`,
      jsonRequest('PUT', { price: 30, reason: 'launch' }, admin),
    );
    expect(put.status).toBe(200);
    expect(
      (
        await h.app.request(
          `/v1/admin/prices/${service}/US`,
          jsonRequest('PUT', { price: 0 }, admin),
        )
      ).status,
    ).toBe(400);
    expect(
      (
        await h.app.request(
          `/v1/admin/prices/${service}/US`,
          jsonRequest('PUT', { price: 5 }, await customerToken(customer.id)),
        )
      ).status,
    ).toBe(403);
    const { id } = await started(await h.buy(customer.id, { service, timeoutSeconds: 60 }));
    expect(await h.ledger.walletBalance(customer.id)).toBe(70);
    await h.cancel(customer.id, id);
    await h.db.sql`delete from prices where service = ${service}`;
  });
});

describe('the SMS webhook', () => {
  it('refuses a missing or wrong signature with 401 and delivers nothing', async () => {
    const customer = await fundedCustomer(100);
    const { id } = await started(await h.buy(customer.id, { timeoutSeconds: 60 }));
    await h.waitFor(customer.id, id, ['active']);
    expect((await h.deliverCode(id, '123456', 'not-the-secret-at-all')).status).toBe(401);
    const unsigned = await h.app.request(
      '/webhooks/sms',
      jsonRequest('POST', { verificationId: id, code: '1' }),
    );
    expect(unsigned.status).toBe(401);
    expect((await h.get(customer.id, id)).status).toBe('active');
    expect((await h.deliverCode('ver_00000000000000000000000000000000', '1')).status).toBe(404);
    await h.cancel(customer.id, id);
  });
});

describe('validation and access', () => {
  it.each([
    ['timeoutSeconds 0', { timeoutSeconds: 0 }],
    ['timeoutSeconds above a day', { timeoutSeconds: 86_401 }],
    ['a fractional timeout', { timeoutSeconds: 1.5 }],
    ['an unknown service', { service: 'no-such-service' }],
    ['a bad country', { country: 'USA' }],
  ])('answers 400 for %s', async (_label, body) => {
    const customer = await fundedCustomer(100);
    const res = await h.buy(customer.id, body);
    expect(res.status).toBe(400);
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
  });

  it("refuses admins buying and customers reading someone else's verification", async () => {
    const admin = await adminToken();
    const res = await h.app.request(
      '/v1/verifications',
      jsonRequest('POST', { service: h.service, country: 'US' }, admin),
    );
    expect(res.status).toBe(403);
    const alice = await fundedCustomer(100);
    const bob = await fundedCustomer(0);
    const { id } = await started(await h.buy(alice.id, { timeoutSeconds: 60 }));
    const peek = await h.app.request(`/v1/verifications/${id}`, {
      headers: { authorization: `Bearer ${await customerToken(bob.id)}` },
    });
    expect(peek.status).toBe(403);
    expect((await h.cancel(bob.id, id)).status).toBe(403);
    const asAdmin = await h.app.request(`/v1/verifications/${id}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(((await asAdmin.json()) as Verification).price).toBe(50);
    await h.cancel(alice.id, id);
  });
});

describe('live wallet events', () => {
  it('streams the purchase and the refund as they commit', async () => {
    const customer = await fundedCustomer(100);
    const controller = new AbortController();
    const res = await h.app.request(`/v1/wallet/events`, {
      headers: { authorization: `Bearer ${await customerToken(customer.id)}` },
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const events: Array<{ balance: number; entry: { type: string; amount: number } | null }> = [];
    let buffer = '';
    const readUntil = async (count: number) => {
      while (events.length < count) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += new TextDecoder().decode(value);
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split('\n').find((l) => l.startsWith('data:'));
          if (data) events.push(JSON.parse(data.slice(5).trim()) as (typeof events)[number]);
        }
      }
    };
    await readUntil(1);
    expect(events[0]).toMatchObject({ balance: 100, entry: null });
    await started(await h.buy(customer.id, { timeoutSeconds: 1 }));
    await readUntil(3);
    controller.abort();
    expect(events.slice(1)).toEqual([
      expect.objectContaining({
        balance: 50,
        entry: expect.objectContaining({ type: 'verification_purchase', amount: -50 }),
      }),
      expect.objectContaining({
        balance: 100,
        entry: expect.objectContaining({ type: 'verification_refund', amount: 50 }),
      }),
    ]);
  });
});
