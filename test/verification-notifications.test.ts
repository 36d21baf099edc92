// Notifications around a verification: a failing delivery is retried (never dropped) without
// touching the money again; preferences mute kinds; the list pages newest first; metrics count it all.
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NotifyInput } from '../src/activities/notifications.js';
import { createActivities } from '../src/activities/index.js';
import { deliverToInbox } from '../src/notifications/dispatcher.js';
import {
  createCustomer,
  customerToken,
  deliveredNotifications,
  expectLedgerConsistent,
  fund,
  jsonRequest,
} from './helpers.js';
import { verificationHarness, type VerificationHarness } from './verification-harness.js';

let h: VerificationHarness;
const failuresLeft = new Map<string, number>();
const attempts = new Map<string, number>();

beforeAll(async () => {
  h = await verificationHarness('notify', {
    outbox: {
      // The notification store fails twice for each refund notice, then recovers.
      deliver: async (tx, row) => {
        attempts.set(row.customerId, (attempts.get(row.customerId) ?? 0) + 1);
        const left =
          failuresLeft.get(row.idempotencyKey) ?? (row.kind === 'credits_refunded' ? 2 : 0);
        if (left > 0) {
          failuresLeft.set(row.idempotencyKey, left - 1);
          throw new Error('notification store unavailable');
        }
        failuresLeft.set(row.idempotencyKey, 0);
        return deliverToInbox(tx, row);
      },
    },
  });
});
let real: ReturnType<typeof createActivities>;
beforeAll(() => {
  real = createActivities({ db: h.db, metrics: h.metrics });
});

afterAll(async () => {
  await expectLedgerConsistent(h.db);
  await h.close();
});

async function get(path: string, customerId: string) {
  return h.app.request(path, {
    headers: { authorization: `Bearer ${await customerToken(customerId)}` },
  });
}

describe('notifications', () => {
  it('retries a failing notification store until the refund notice is stored, refunding once', async () => {
    const customer = await createCustomer(h.db);
    await fund(h.ledger, customer.id, 100);
    const { id } = (await (await h.buy(customer.id, { timeoutSeconds: 1 })).json()) as {
      id: string;
    };
    await h.waitFor(customer.id, id, ['refunded'], 30_000);
    await h.temporal.workflow.getHandle(`verification-${id}`).result();
    await deliveredNotifications(h.db, customer.id);
    expect(attempts.get(customer.id)).toBe(4); // one debit notice, three tries of the refund notice
    expect(await h.entryTypes(id)).toEqual(['verification_purchase', 'verification_refund']);
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);

    const res = await get('/v1/notifications', customer.id);
    const { items } = (await res.json()) as {
      items: Array<{ kind: string; amount: number; balanceAfter: number }>;
    };
    expect(items.map((n) => n.kind)).toEqual(['credits_refunded', 'credits_deducted']);
    expect(items[0]).toMatchObject({ amount: 50, balanceAfter: 100 });

    const metrics = await h.metrics.registry.getSingleMetricAsString(
      'creditflow_refund_latency_seconds',
    );
    expect(metrics).toMatch(
      /creditflow_refund_latency_seconds_count\{flow="verification",reason="timeout"\} [1-9]/,
    );
    const tx = await h.metrics.registry.getSingleMetricAsString(
      'creditflow_ledger_transactions_total',
    );
    expect(tx).toMatch(/type="verification_refund",status="posted"\} [1-9]/);
  });

  it('honours preferences: a muted kind is not stored', async () => {
    const customer = await createCustomer(h.db);
    await fund(h.ledger, customer.id, 100);
    const token = await customerToken(customer.id);
    const put = await h.app.request(
      '/v1/notifications/preferences',
      jsonRequest('PUT', { kinds: ['credits_refunded'], minAmount: 0 }, token),
    );
    expect(put.status).toBe(200);
    expect(await (await get('/v1/notifications/preferences', customer.id)).json()).toMatchObject({
      kinds: ['credits_refunded'],
      minAmount: 0,
    });
    const { id } = (await (await h.buy(customer.id, { timeoutSeconds: 1 })).json()) as {
      id: string;
    };
    await h.waitFor(customer.id, id, ['refunded'], 30_000);
    await h.temporal.workflow.getHandle(`verification-${id}`).result();
    await deliveredNotifications(h.db, customer.id);
    const { items } = (await (await get('/v1/notifications', customer.id)).json()) as {
      items: Array<{ kind: string }>;
    };
    expect(items.map((n) => n.kind)).toEqual(['credits_refunded']);
    const muted = await h.metrics.registry.getSingleMetricAsString(
      'creditflow_notifications_total',
    );
    expect(muted).toMatch(/kind="credits_deducted",outcome="muted"\} [1-9]/);
  });

  it('refuses bad preferences with 400', async () => {
    const customer = await createCustomer(h.db);
    const token = await customerToken(customer.id);
    for (const body of [
      { kinds: ['spam'], minAmount: 0 },
      { kinds: null, minAmount: -1 },
      { kinds: null },
    ]) {
      const res = await h.app.request(
        '/v1/notifications/preferences',
        jsonRequest('PUT', body, token),
      );
      expect(res.status).toBe(400);
    }
  });

  it('pages the list newest first', async () => {
    const customer = await createCustomer(h.db);
    for (let i = 0; i < 3; i++) {
      await new MockActivityEnvironment().run((input: NotifyInput) => real.notify(input), {
        idempotencyKey: `page-${customer.id}-${i}`,
        customerId: customer.id,
        kind: 'credits_added' as const,
        title: `n${i}`,
        body: 'b',
      });
    }
    const first = (await (await get('/v1/notifications?limit=2', customer.id)).json()) as {
      items: Array<{ title: string }>;
      nextCursor: string;
    };
    expect(first.items.map((n) => n.title)).toEqual(['n2', 'n1']);
    const second = (await (
      await get(`/v1/notifications?limit=2&cursor=${first.nextCursor}`, customer.id)
    ).json()) as {
      items: Array<{ title: string }>;
      nextCursor: string | null;
    };
    expect(second.items.map((n) => n.title)).toEqual(['n0']);
    expect(second.nextCursor).toBeNull();
  });
});
