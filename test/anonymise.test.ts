// GDPR erasure: the customer's e-mail, external id and the personal data in their notifications,
// outbox messages, verifications and Stripe event payloads are gone; every ledger row stays, the
// checker stays clean, the audit log says who and why, and a second call changes nothing.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { REDACTED, redactPersonalData } from '../src/api/admin/anonymise.js';
import { createLedger } from '../src/ledger/ledger.js';
import { workflowIds } from '../src/shared.js';
import {
  adminToken,
  createCustomer,
  customerToken,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  uniqueId,
  useTestApp,
} from './helpers.js';

const bench = useTestApp('anonymise', {}, { checkLedger: true });
const hex = () => randomBytes(8).toString('hex');

describe('redactPersonalData', () => {
  it('scrubs known literals, e-mail addresses, phone numbers and personal keys', () => {
    const input = {
      title: 'Hello ACME-42',
      body: 'Code sent to +1 555-010-9999; reply to Jane.Doe@Example.test or +447700900123.',
      data: { phoneNumber: '+15550109999', nested: [{ email: 'x' }, 'ok 1000 credits'] },
      amount: 12,
    };
    const out = redactPersonalData(input, ['acme-42', 'jane.doe@example.test']);
    expect(out).toEqual({
      title: `Hello ${REDACTED}`,
      body: `Code sent to ${REDACTED}; reply to ${REDACTED} or ${REDACTED}.`,
      data: { phoneNumber: REDACTED, nested: [{ email: REDACTED }, 'ok 1000 credits'] },
      amount: 12,
    });
  });

  it('leaves ordinary text, ids and numbers alone', () => {
    const text = {
      body: '120 credits for order ord_0123456789abcdef (3 items). Balance: 1000000.',
      data: { orderId: 'ord_0123456789abcdef', itemIds: ['7f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f'] },
    };
    expect(redactPersonalData(text, ['ab'])).toEqual(text);
  });
});

describe('POST /v1/admin/customers/:id/anonymise', () => {
  async function customerWithPersonalData() {
    const { db } = bench;
    const ledger = createLedger(db.sql);
    const customer = await createCustomer(db, { externalId: uniqueId('crm') });
    const phone = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, '0')}`;
    await fund(ledger, customer.id, 500);
    await ledger.postEntry({
      idempotencyKey: uniqueId('anon-spend'),
      type: 'verification_purchase',
      description: 'a verification',
      lines: [
        { account: { wallet: customer.id }, amount: -20 },
        { account: { system: 'revenue' }, amount: 20 },
      ],
    });
    const verificationId = `ver_${hex()}`;
    await db.sql`
      insert into verifications (id, workflow_id, customer_id, service, country, price,
                                 timeout_seconds, status, phone_number, code)
      values (${verificationId}, ${workflowIds.verification(verificationId)}, ${customer.id},
              'whatsapp', 'US', 20, 60, 'completed', ${phone}, '123456')`;
    await db.sql`
      insert into notifications (idempotency_key, customer_id, kind, title, body, data)
      values (${uniqueId('n')}, ${customer.id}, 'credits_deducted', 'Credits used',
              ${`20 credits for a number ${phone}; receipts go to ${customer.email}.`},
              ${JSON.stringify({ verificationId, phoneNumber: phone })}::jsonb),
             (${uniqueId('n')}, ${customer.id}, 'credits_added', 'Credits added',
              '500 credits added. Balance: 500.', '{}'::jsonb)`;
    await db.sql`
      insert into notification_outbox (idempotency_key, customer_id, kind, payload, task_queue, status)
      values (${uniqueId('o')}, ${customer.id}, 'credits_deducted',
              ${JSON.stringify({ title: 'Credits used', body: `Number ${phone}`, data: { to: customer.email } })}::jsonb,
              ${uniqueId('no-dispatcher')}, 'delivered')`;
    const paymentId = `pay_${hex()}`;
    await db.sql`
      insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
      values (${paymentId}, ${workflowIds.checkout(paymentId)}, ${customer.id}, 'small', 100, 500, 'eur', 'expired')`;
    const eventId = `evt_${hex()}`;
    await db.sql`
      insert into stripe_events (id, type, status, payment_id, payload)
      values (${eventId}, 'checkout.session.expired', 'completed', ${paymentId},
              ${JSON.stringify({ id: eventId, data: { object: { id: 'cs_1', customer_details: { email: customer.email, name: 'Jane' }, metadata: { paymentId } } } })}::jsonb)`;
    return { customer, phone, verificationId, paymentId, eventId };
  }

  const anonymise = async (
    id: string,
    body: unknown = { reason: 'erasure request #1' },
    token?: string,
  ) =>
    bench.app.request(
      `/v1/admin/customers/${id}/anonymise`,
      jsonRequest('POST', body, token ?? (await adminToken()), {
        'idempotency-key': uniqueId('gdpr'),
      }),
    );

  it('scrubs personal data, keeps every ledger row, and records the erasure', async () => {
    const { db } = bench;
    const { customer, phone, verificationId, eventId } = await customerWithPersonalData();
    const ledgerBefore = await db.sql`
      select e.id, e.type, p.amount, p.balance_after from entries e
      join postings p on p.entry_id = e.id
      join accounts a on a.id = p.account_id
      where a.customer_id = ${customer.id} order by p.id`;
    expect(ledgerBefore).toHaveLength(2);

    const res = await anonymise(customer.id);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      status: string;
      anonymisedAt: string;
      scrubbed: Record<string, number>;
    };
    expect(body).toMatchObject({
      status: 'anonymised',
      scrubbed: { notifications: 1, outboxMessages: 1, verifications: 1, stripeEvents: 1 },
    });

    const [row] = await db.sql`
      select email, external_id, anonymised_at is not null as anonymised from customers
      where id = ${customer.id}`;
    expect(row).toEqual({ email: null, external_id: null, anonymised: true });

    // Nothing personal left anywhere we keep messages.
    const leftovers = await db.sql<{ text: string }[]>`
      select title || body || data::text as text from notifications where customer_id = ${customer.id}
      union all select payload::text from notification_outbox where customer_id = ${customer.id}
      union all select payload::text from stripe_events where id = ${eventId}`;
    expect(leftovers).toHaveLength(4);
    for (const { text } of leftovers) {
      expect(text).not.toContain(phone);
      expect(text.toLowerCase()).not.toContain(customer.email.toLowerCase());
    }
    const [notification] = await db.sql<{ body: string; data: Record<string, unknown> }[]>`
      select body, data from notifications where customer_id = ${customer.id} and kind = 'credits_deducted'`;
    expect(notification!.body).toBe(
      `20 credits for a number ${REDACTED}; receipts go to ${REDACTED}.`,
    );
    expect(notification!.data).toEqual({ verificationId, phoneNumber: REDACTED });
    const [verification] = await db.sql`
      select phone_number, code, status from verifications where id = ${verificationId}`;
    expect(verification).toEqual({ phone_number: null, code: null, status: 'completed' });
    const [event] = await db.sql<{ payload: { data: { object: Record<string, unknown> } } }[]>`
      select payload from stripe_events where id = ${eventId}`;
    expect(event!.payload.data.object).toMatchObject({ id: 'cs_1', customer_details: REDACTED });

    // The ledger is exactly as it was, and still proves itself.
    const ledgerAfter = await db.sql`
      select e.id, e.type, p.amount, p.balance_after from entries e
      join postings p on p.entry_id = e.id
      join accounts a on a.id = p.account_id
      where a.customer_id = ${customer.id} order by p.id`;
    expect(ledgerAfter).toEqual(ledgerBefore);
    await expectLedgerConsistent(db);

    const audit = await db.sql`
      select actor, action, reason, details from audit_log
      where target_type = 'customer' and target_id = ${customer.id}`;
    expect(audit).toEqual([
      expect.objectContaining({
        actor: 'admin-tests',
        action: 'customer_anonymise',
        reason: 'erasure request #1',
      }),
    ]);
    expect(JSON.stringify(audit)).not.toContain(customer.email);

    // The old references find nobody; the id still does.
    const admin = await adminToken();
    const lookup = (ref: string) =>
      bench.app.request(`/v1/customers/${encodeURIComponent(ref)}`, {
        headers: { authorization: `Bearer ${admin}` },
      });
    expect((await lookup(customer.email)).status).toBe(404);
    expect((await lookup(customer.externalId!)).status).toBe(404);
    const byId = await lookup(customer.id);
    expect(await byId.json()).toMatchObject({ email: null, externalId: null });
    const wallet = await bench.app.request(`/v1/wallet?customerId=${customer.id}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(await wallet.json()).toMatchObject({ balance: 480 });
  });

  it('a second call answers already_anonymised and changes nothing', async () => {
    const { customer } = await customerWithPersonalData();
    const first = (await (await anonymise(customer.id)).json()) as { anonymisedAt: string };
    const again = await anonymise(customer.id, { reason: 'asked twice' });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({
      customerId: customer.id,
      status: 'already_anonymised',
      anonymisedAt: first.anonymisedAt,
      scrubbed: null,
    });
    const audit = await bench.db.sql`
      select reason from audit_log where target_type = 'customer' and target_id = ${customer.id}`;
    expect(audit).toEqual([{ reason: 'erasure request #1' }]);
  });

  it('two concurrent calls anonymise once', async () => {
    const { customer } = await customerWithPersonalData();
    const results = await Promise.all([anonymise(customer.id), anonymise(customer.id)]);
    const statuses = await Promise.all(
      results.map(async (r) => ((await r.json()) as { status: string }).status),
    );
    expect(statuses.sort()).toEqual(['already_anonymised', 'anonymised']);
  });

  it('404 for an unknown customer, 400 for a bad id or reason, 403 for a customer', async () => {
    expect((await anonymise('00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await anonymise('not-a-uuid')).status).toBe(400);
    const { customer } = await customerWithPersonalData();
    expect((await anonymise(customer.id, {})).status).toBe(400);
    expect((await anonymise(customer.id, { reason: 'x' })).status).toBe(400);
    const own = await customerToken(customer.id);
    expect((await anonymise(customer.id, undefined, own)).status).toBe(403);
    const [row] = await bench.db.sql`
      select email, anonymised_at from customers where id = ${customer.id}`;
    expect(row).toEqual({ email: customer.email, anonymised_at: null });
  });
});
