// A bench for driving workflows straight through Temporal (no HTTP): its own task queue, a worker
// whose activities a test can wrap (to stall an attempt, or fail one after its commit), and
// readers for the ledger rows a test asserts on.
import type { Client, WorkflowHandle } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { temporal as proto } from '@temporalio/proto';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { createActivities, type ActivityDeps, type Activities } from '../src/activities/index.js';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import { createMetrics } from '../src/metrics.js';
import { SimulatedSmsProvider } from '../src/sms/provider.js';
import { workflowIds, type OrderInput, type VerificationInput } from '../src/shared.js';
import {
  connectTestClient,
  createCustomer,
  fund,
  startTestWorker,
  testDatabase,
  uniqueId,
} from './helpers.js';

/** The attempt number of the activity running now. */
export const attempt = () => Context.current().info.attempt;

/** A promise the test resolves by hand, bounded so a broken test cannot hang a run. */
export function gate(limitMs = 60_000) {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
    setTimeout(resolve, limitMs).unref();
  });
  return { opened, open: () => open() };
}

/** A promise plus its resolver, for "tell me when this happened". */
export function signal<T = void>() {
  let fire: (value: T) => void = () => {};
  const fired = new Promise<T>((resolve) => (fire = resolve));
  return { fired, fire: (value: T) => fire(value) };
}

/**
 * With RECORD_HISTORIES=1, writes the closed run's history to test/histories/<name>.json, where
 * the replay test keeps every later workflow change compatible with it.
 */
export async function recordHistory(handle: WorkflowHandle, name: string): Promise<void> {
  if (!process.env.RECORD_HISTORIES) return;
  await handle.result().catch(() => undefined);
  const { History } = proto.api.history.v1;
  const history = History.decode(History.encode(await handle.fetchHistory()).finish()).toJSON();
  const file = fileURLToPath(new URL(`./histories/${name}.json`, import.meta.url));
  writeFileSync(file, `${JSON.stringify({ workflowId: handle.workflowId, history }, null, 2)}\n`);
}

/**
 * Every activity the run scheduled has a heartbeat timeout, so a lost worker is noticed within
 * seconds and a stalled attempt cannot hold its step until start-to-close.
 */
export async function expectEveryActivityHeartbeats(handle: WorkflowHandle) {
  const events = (await handle.fetchHistory()).events ?? [];
  const scheduled = events
    .map((e) => e.activityTaskScheduledEventAttributes)
    .filter((a): a is NonNullable<typeof a> => Boolean(a));
  expect(scheduled.length).toBeGreaterThan(0);
  const unbounded = scheduled
    .filter((a) => !(Number(a.heartbeatTimeout?.seconds ?? 0) > 0))
    .map((a) => a.activityType?.name);
  expect(unbounded).toEqual([]);
}

export async function workflowBench(
  name: string,
  options: {
    /** Replaces activities; receives the real ones to wrap. */
    wrap?: (real: Activities) => Partial<Activities>;
    deps?: Partial<Omit<ActivityDeps, 'db'>>;
  } = {},
) {
  const db: Database = testDatabase(20);
  const ledger: Ledger = createLedger(db.sql);
  const temporal: Client = await connectTestClient();
  const taskQueue = uniqueId(name);
  const sms = new SimulatedSmsProvider();
  const metrics = createMetrics();
  const deps = { sms, metrics, ...options.deps };
  const real = createActivities({ db, ...deps });
  const worker = await startTestWorker(db, taskQueue, deps, options.wrap?.(real) ?? {});

  const bench = {
    db,
    ledger,
    temporal,
    taskQueue,
    sms,
    metrics,
    real,
    async customerWith(credits: number) {
      const customer = await createCustomer(db);
      if (credits > 0) await fund(ledger, customer.id, credits);
      return customer;
    },
    /** Moves credits out of (negative) or into (positive) a wallet, like an admin adjustment. */
    async adjust(customerId: string, amount: number) {
      await ledger.postEntry({
        idempotencyKey: uniqueId('test-adjust'),
        type: 'adjustment',
        description: 'Test adjustment',
        lines: [
          { account: { wallet: customerId }, amount },
          { account: { system: 'adjustments' }, amount: -amount },
        ],
      });
    },
    async item(price: number) {
      const seller = await createCustomer(db);
      const [row] = await db.sql<{ id: string }[]>`
        insert into items (seller_id, owner_id, title, price, status)
        values (${seller.id}, ${seller.id}, ${`item ${price}`}, ${price}, 'available')
        returning id`;
      return { id: row!.id, price, sellerId: seller.id };
    },
    startVerification(customerId: string, overrides: Partial<VerificationInput> = {}) {
      const input: VerificationInput = {
        verificationId: randomUUID(),
        customerId,
        service: `${name}-svc`,
        country: 'US',
        price: 50,
        timeoutSeconds: 120,
        ...overrides,
      };
      return temporal.workflow.start('verificationPurchase', {
        taskQueue,
        workflowId: workflowIds.verification(input.verificationId),
        args: [input],
      });
    },
    startOrder(buyerId: string, itemIds: string[], orderId: string = randomUUID()) {
      const input: OrderInput = { orderId, buyerId, itemIds };
      return temporal.workflow.start('order', {
        taskQueue,
        workflowId: workflowIds.order(input.orderId),
        args: [input],
      });
    },
    /** The run's end: its result, or the failure it ended with. */
    async settled(handle: WorkflowHandle) {
      return handle.result().then(
        (value: unknown) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
    },
    async entries(workflowId: string) {
      return db.sql<{ id: string; type: string; idempotency_key: string }[]>`
        select id, type, idempotency_key from entries where workflow_id = ${workflowId} order by id`;
    },
    async entryTypes(workflowId: string) {
      return (await bench.entries(workflowId)).map((e) => e.type);
    },
    async verification(verificationId: string) {
      const [row] = await db.sql<
        {
          status: string;
          refund_reason: string | null;
          code: string | null;
          release_failed_at: Date | null;
          release_error: string | null;
        }[]
      >`select status, refund_reason, code, release_failed_at, release_error
        from verifications where id = ${verificationId}`;
      return row;
    },
    async close() {
      await worker.stop();
      await temporal.connection.close();
      await db.close();
    },
  };
  return bench;
}

export type WorkflowBench = Awaited<ReturnType<typeof workflowBench>>;
