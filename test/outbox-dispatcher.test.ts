// The outbox dispatcher on its own, against the real database: gives up loudly after the last
// attempt and delivers once when re-queued, honours preferences, shares a queue with another
// dispatcher without delivering anything twice, and stops only after the batch in hand.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { createMetrics } from '../src/metrics.js';
import {
  createOutboxDispatcher,
  deliverToInbox,
  type DeliverMessage,
  type OutboxSettings,
} from '../src/notifications/dispatcher.js';
import { enqueueMessage, type OutboxMessage } from '../src/notifications/outbox.js';
import {
  createCustomer,
  deliveredNotifications,
  eventually,
  testDatabase,
  testOutboxSettings,
  uniqueId,
} from './helpers.js';

let db: Database;

beforeAll(() => {
  db = testDatabase(10);
});

afterAll(async () => {
  await db.close();
});

function capturingLogger() {
  const lines: Array<{ level: number; msg: string; outboxId?: number; attempts?: number }> = [];
  const logger = pino(
    { level: 'warn' },
    { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
  );
  return { logger, lines };
}

function dispatcherFor(
  taskQueue: string,
  options: { deliver?: DeliverMessage; settings?: Partial<OutboxSettings> } = {},
) {
  const metrics = createMetrics();
  const { logger, lines } = capturingLogger();
  const dispatcher = createOutboxDispatcher({
    sql: db.sql,
    taskQueue,
    logger,
    metrics,
    settings: { ...testOutboxSettings, ...options.settings },
    deliver: options.deliver,
  });
  return { dispatcher, metrics, lines };
}

async function enqueue(
  taskQueue: string,
  customerId: string,
  overrides: Partial<OutboxMessage> = {},
) {
  const message: OutboxMessage = {
    idempotencyKey: uniqueId('outbox-test'),
    customerId,
    kind: 'credits_added',
    title: 'Credits added',
    body: 'test message',
    amount: 10,
    balanceAfter: 10,
    ...overrides,
  };
  await db.sql.begin((tx) => enqueueMessage(tx, { taskQueue }, message));
  return message;
}

async function rowsOf(customerId: string) {
  return db.sql<{ id: string; status: string; attempts: number; last_error: string | null }[]>`
    select id, status, attempts, last_error from notification_outbox
    where customer_id = ${customerId} order by id`;
}

describe('the outbox dispatcher', () => {
  it('marks a message failed after the last attempt, alerts, and delivers it once when re-queued', async () => {
    const taskQueue = uniqueId('outbox-give-up');
    const customer = await createCustomer(db);
    let down = true;
    const { dispatcher, metrics, lines } = dispatcherFor(taskQueue, {
      settings: { maxAttempts: 3, alertAfterAttempts: 2, retryInitialMs: 10, retryMaxMs: 10 },
      deliver: (tx, row) =>
        down ? Promise.reject(new Error('inbox unavailable')) : deliverToInbox(tx, row),
    });
    await enqueue(taskQueue, customer.id);
    dispatcher.start();
    try {
      const [failed] = await eventually(async () => {
        const rows = await rowsOf(customer.id);
        return rows[0]?.status === 'failed' ? rows : undefined;
      });
      expect(failed).toMatchObject({ attempts: 3, last_error: 'inbox unavailable' });
      const id = Number(failed!.id);
      const about = lines.filter((l) => l.outboxId === id);
      expect(about.map((l) => [l.level, l.attempts])).toEqual([
        [40, 1],
        [50, 2],
        [50, 3],
      ]);
      expect(about.at(-1)?.msg).toMatch(/failed for good/);
      await dispatcher.refreshGauges();
      const gauge = await metrics.registry.getSingleMetricAsString('creditflow_outbox_messages');
      const gaugeLines = gauge.split('\n');
      expect(gaugeLines).toContain(
        `creditflow_outbox_messages{task_queue="${taskQueue}",state="failed"} 1`,
      );
      expect(gaugeLines).toContain(
        `creditflow_outbox_messages{task_queue="${taskQueue}",state="pending"} 0`,
      );
      expect(
        await metrics.registry.getSingleMetricAsString('creditflow_outbox_delivery_errors_total'),
      ).toMatch(/kind="credits_added"\} 3\b/);

      // An operator re-queues it once the inbox is back.
      down = false;
      await db.sql`
        update notification_outbox set status = 'pending', next_attempt_at = now()
        where id = ${id}`;
      expect(await deliveredNotifications(db, customer.id)).toHaveLength(1);
      expect((await rowsOf(customer.id))[0]).toMatchObject({
        status: 'delivered',
        attempts: 4,
        last_error: null,
      });
    } finally {
      await dispatcher.stop();
    }
  });

  it("applies the customer's preferences: a muted kind or a small amount is not stored", async () => {
    const taskQueue = uniqueId('outbox-muted');
    const customer = await createCustomer(db);
    await db.sql`
      insert into notification_preferences (customer_id, kinds, min_amount)
      values (${customer.id}, ${['credits_added', 'credits_refunded']}, 100)`;
    const { dispatcher, metrics } = dispatcherFor(taskQueue);
    await enqueue(taskQueue, customer.id, { kind: 'credits_deducted', amount: 500 });
    await enqueue(taskQueue, customer.id, { kind: 'credits_added', amount: 99 });
    const kept = await enqueue(taskQueue, customer.id, { kind: 'credits_refunded', amount: -100 });
    expect(await dispatcher.runOnce()).toBe(3);
    expect((await rowsOf(customer.id)).map((r) => r.status)).toEqual([
      'muted',
      'muted',
      'delivered',
    ]);
    const stored = await deliveredNotifications(db, customer.id);
    expect(stored.map((n) => [n.kind, n.amount])).toEqual([['credits_refunded', '-100']]);
    expect(stored[0]?.body).toBe(kept.body);
    expect(
      await metrics.registry.getSingleMetricAsString('creditflow_notifications_total'),
    ).toMatch(/kind="credits_deducted",outcome="muted"\} 1\b/);
  });

  it('shares a queue with another dispatcher: each message delivered once, by one of them', async () => {
    const taskQueue = uniqueId('outbox-shared');
    const customer = await createCustomer(db);
    for (let i = 0; i < 10; i++) await enqueue(taskQueue, customer.id);
    let releaseFirst = () => {};
    const firstHolding = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    let firstStarted = () => {};
    const firstBusy = new Promise<void>((resolve) => {
      firstStarted = resolve;
    });
    const byFirst: number[] = [];
    const bySecond: number[] = [];
    // The first dispatcher holds the row in hand (each row is its own transaction) until the
    // second has run its batch.
    const first = dispatcherFor(taskQueue, {
      settings: { batchSize: 4 },
      deliver: async (tx, row) => {
        firstStarted();
        await firstHolding;
        byFirst.push(row.id);
        return deliverToInbox(tx, row);
      },
    });
    const second = dispatcherFor(taskQueue, {
      settings: { batchSize: 10 },
      deliver: async (tx, row) => {
        bySecond.push(row.id);
        return deliverToInbox(tx, row);
      },
    });
    const firstRun = first.dispatcher.runOnce();
    await firstBusy;
    expect(await second.dispatcher.runOnce()).toBe(9);
    releaseFirst();
    expect(await firstRun).toBe(1);

    expect(byFirst).toHaveLength(1);
    expect(bySecond).toHaveLength(9);
    expect(new Set([...byFirst, ...bySecond]).size).toBe(10);
    expect(await deliveredNotifications(db, customer.id)).toHaveLength(10);
    expect(await second.dispatcher.runOnce()).toBe(0);
  });

  it('stops after finishing the batch in hand', async () => {
    const taskQueue = uniqueId('outbox-stop');
    const customer = await createCustomer(db);
    await enqueue(taskQueue, customer.id);
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let busy = () => {};
    const delivering = new Promise<void>((resolve) => {
      busy = resolve;
    });
    const { dispatcher } = dispatcherFor(taskQueue, {
      deliver: async (tx, row) => {
        busy();
        await held;
        return deliverToInbox(tx, row);
      },
    });
    dispatcher.start();
    await delivering;
    let stopped = false;
    const stopping = dispatcher.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect((await rowsOf(customer.id)).map((r) => r.status)).toEqual(['delivered']);
  });
});
