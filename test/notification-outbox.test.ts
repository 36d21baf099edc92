// Notifications never sit on the money path: with delivery down, refunds and orders still settle;
// the stuck messages are retried and alerted on, and delivered exactly once when delivery is back.
// A message exists only when its ledger entry committed.
import { MockActivityEnvironment } from '@temporalio/testing';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../src/activities/index.js';
import type { NotifyInput } from '../src/activities/notifications.js';
import { deliverToInbox } from '../src/notifications/dispatcher.js';
import type { OrderState } from '../src/shared.js';
import {
  createCustomer,
  customerToken,
  deliveredNotifications,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
} from './helpers.js';
import { verificationHarness, type VerificationHarness } from './verification-harness.js';

/** Customers whose notifications cannot be delivered right now. */
const deliveryDown = new Set<string>();
const storeUnavailable = () => new Error('notification store unavailable');

/** What the dispatcher logged at warn level and above. */
const logs: Array<{ level: number; msg: string; outboxId?: number; attempts?: number }> = [];
const logger = pino(
  { level: 'warn' },
  {
    write: (line: string) => {
      logs.push(JSON.parse(line) as (typeof logs)[number]);
    },
  },
);

let h: VerificationHarness;
let real: ReturnType<typeof createActivities>;

beforeAll(async () => {
  h = await verificationHarness('outbox', {
    // Runs recorded before the outbox still call `notify`: it is down too, so a workflow that
    // waited on it would hold the money.
    overrides: {
      notify: async (input: NotifyInput) => {
        if (deliveryDown.has(input.customerId)) throw storeUnavailable();
        return real.notify(input);
      },
    },
    outbox: {
      logger,
      deliver: async (tx, row) => {
        if (deliveryDown.has(row.customerId)) throw storeUnavailable();
        return deliverToInbox(tx, row);
      },
    },
  });
  real = createActivities({ db: h.db });
});

afterAll(async () => {
  await expectLedgerConsistent(h.db);
  await h.close();
});

interface OutboxRowView {
  id: string;
  idempotency_key: string;
  kind: string;
  status: string;
  attempts: number;
  last_error: string | null;
  entry_id: string | null;
}

async function outboxOf(customerId: string) {
  return h.db.sql<OutboxRowView[]>`
    select id, idempotency_key, kind, status, attempts, last_error, entry_id
    from notification_outbox where customer_id = ${customerId} order by id`;
}

async function storedNotifications(customerId: string) {
  return h.db.sql<{ idempotency_key: string; kind: string; amount: string }[]>`
    select idempotency_key, kind, amount from notifications where customer_id = ${customerId} order by id`;
}

async function metric(name: string) {
  return h.metrics.registry.getSingleMetricAsString(name);
}

describe('the notification outbox', () => {
  it('refunds a timed-out verification while delivery is down, alerts, and delivers each notice once when it is back', async () => {
    const customer = await createCustomer(h.db);
    await fund(h.ledger, customer.id, 100);
    deliveryDown.add(customer.id);

    const res = await h.buy(customer.id, { timeoutSeconds: 2 });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const refunded = await h.waitFor(customer.id, id, ['refunded'], 20_000);
    expect(refunded.refundReason).toBe('timeout');
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    expect(await h.entryTypes(id)).toEqual(['verification_purchase', 'verification_refund']);

    // Both notices wait in the outbox, one per ledger entry, retried and failing.
    const stuck = await eventually(async () => {
      const rows = await outboxOf(customer.id);
      const alerted = rows.length === 2 && rows.every((r) => r.attempts >= 3);
      return alerted ? rows : undefined;
    });
    expect(stuck.map((r) => [r.kind, r.status])).toEqual([
      ['credits_deducted', 'pending'],
      ['credits_refunded', 'pending'],
    ]);
    expect(stuck.every((r) => r.last_error === 'notification store unavailable')).toBe(true);
    const entryIds = await h.db.sql<{ id: string }[]>`
      select id from entries where workflow_id = ${`verification-${id}`} order by id`;
    expect(stuck.map((r) => r.entry_id)).toEqual(entryIds.map((e) => e.id));
    expect(await storedNotifications(customer.id)).toEqual([]);

    // The alert: an error log naming each stuck row, and the failing gauge.
    for (const row of stuck) {
      expect(
        logs.some(
          (l) =>
            l.level >= 50 &&
            l.outboxId === Number(row.id) &&
            l.msg === 'notification delivery keeps failing',
        ),
      ).toBe(true);
    }
    await h.dispatcher.refreshGauges();
    expect(await metric('creditflow_outbox_messages')).toMatch(
      new RegExp(`\\{task_queue="${h.taskQueue}",state="failing"\\} [1-9]`),
    );
    expect(await metric('creditflow_outbox_delivery_errors_total')).toMatch(
      /kind="credits_refunded"\} [1-9]/,
    );

    // Delivery is back: each notice arrives exactly once, and the gauge clears.
    deliveryDown.delete(customer.id);
    // In whichever order their retries come due: each row backs off on its own.
    const delivered = await deliveredNotifications(h.db, customer.id);
    expect(
      delivered
        .map((n) => [n.kind, n.amount, n.balance_after])
        .sort(([a], [b]) => a!.localeCompare(b!)),
    ).toEqual([
      ['credits_deducted', '50', '50'],
      ['credits_refunded', '50', '100'],
    ]);
    const settled = await outboxOf(customer.id);
    expect(settled.map((r) => r.status)).toEqual(['delivered', 'delivered']);
    expect(settled.every((r) => r.last_error === null)).toBe(true);
    await h.dispatcher.runOnce();
    expect(await storedNotifications(customer.id)).toHaveLength(2);
    await h.dispatcher.refreshGauges();
    expect(await metric('creditflow_outbox_messages')).toMatch(
      new RegExp(`\\{task_queue="${h.taskQueue}",state="failing"\\} 0$`, 'm'),
    );
  });

  it('settles an order while delivery is down: the escrow is emptied and the seller paid', async () => {
    const buyer = await createCustomer(h.db);
    const seller = await createCustomer(h.db);
    await fund(h.ledger, buyer.id, 1000);
    deliveryDown.add(buyer.id);
    deliveryDown.add(seller.id);

    const listed = await h.app.request(
      '/v1/items',
      jsonRequest('POST', { title: 'outbox item', price: 400 }, await customerToken(seller.id)),
    );
    expect(listed.status).toBe(201);
    const item = (await listed.json()) as { id: string };
    const token = await customerToken(buyer.id);
    const ordered = await h.app.request(
      '/v1/orders',
      jsonRequest('POST', { itemIds: [item.id] }, token),
    );
    expect(ordered.status).toBe(202);
    const { id, workflowId } = (await ordered.json()) as { id: string; workflowId: string };
    const state = await eventually(async () => {
      const res = await h.app.request(`/v1/orders/${id}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const body = (await res.json()) as OrderState;
      return ['completed', 'partially_completed', 'failed'].includes(body.status)
        ? body
        : undefined;
    });
    expect(state).toMatchObject({ status: 'completed', purchased: [item.id], charged: 400 });
    expect(await h.ledger.walletBalance(buyer.id)).toBe(600);
    expect(await h.ledger.walletBalance(seller.id)).toBe(400);
    const [escrow] = await h.db.sql<{ total: string | null }[]>`
      select sum(p.amount) as total from postings p
      join accounts a on a.id = p.account_id
      join entries e on e.id = p.entry_id
      where e.workflow_id = ${workflowId} and a.code = 'order_escrow'`;
    expect(Number(escrow?.total ?? 0)).toBe(0);
    expect((await outboxOf(buyer.id)).map((r) => r.status)).toEqual(['pending']);
    expect((await outboxOf(seller.id)).map((r) => r.status)).toEqual(['pending']);

    deliveryDown.delete(buyer.id);
    deliveryDown.delete(seller.id);
    expect((await deliveredNotifications(h.db, buyer.id)).map((n) => n.kind)).toEqual([
      'credits_deducted',
    ]);
    expect((await deliveredNotifications(h.db, seller.id)).map((n) => n.kind)).toEqual([
      'credits_added',
    ]);
  });

  it('queues a notice only when its ledger entry commits, and once however often the step runs', async () => {
    const customer = await createCustomer(h.db);
    await fund(h.ledger, customer.id, 30);
    // The worker's task queue, so its dispatcher delivers what the activity queues.
    const env = new MockActivityEnvironment({ taskQueue: h.taskQueue });
    const input = {
      verificationId: crypto.randomUUID(),
      workflowId: `verification-outbox-${crypto.randomUUID()}`,
      customerId: customer.id,
      service: h.service,
      country: 'US',
      price: 50,
      timeoutSeconds: 60,
    };
    const debit = (ids = input) =>
      env.run<[], { entryId: number }, () => Promise<{ entryId: number }>>(() =>
        real.debitVerification(ids),
      );

    // Refused for want of credits: no entry, so no notice either.
    await expect(debit()).rejects.toMatchObject({
      type: 'insufficient_credits',
    });
    expect(await outboxOf(customer.id)).toEqual([]);

    // Through the API as well: the purchase fails and nothing is queued.
    const res = await h.buy(customer.id, { timeoutSeconds: 60 });
    expect(res.status).toBe(422);
    expect(await outboxOf(customer.id)).toEqual([]);

    // The refusal closed that purchase's debit for good; a new purchase is posted, then the same
    // step again (a retried activity): one entry, one notice.
    await fund(h.ledger, customer.id, 20);
    const paid = {
      ...input,
      verificationId: crypto.randomUUID(),
      workflowId: `verification-outbox-${crypto.randomUUID()}`,
    };
    const first = await debit(paid);
    const again = await debit(paid);
    expect(again).toEqual(first);
    const rows = await outboxOf(customer.id);
    expect(rows.map((r) => [r.idempotency_key, r.entry_id])).toEqual([
      [`${paid.workflowId}:notify-debit`, String(first.entryId)],
    ]);
    expect((await deliveredNotifications(h.db, customer.id)).map((n) => n.body)).toEqual([
      `50 credits for a ${h.service} verification (US). Balance: 0.`,
    ]);
  });
});
