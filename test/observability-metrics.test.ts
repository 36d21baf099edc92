// Metrics written outside the worker flow test: the lag from a Stripe event's creation to its
// processing by the API (a first delivery counts, a redelivery does not), and the ledger write
// latency a ledger reports through its observer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import type { Client } from '@temporalio/client';
import {
  connectTestClient,
  createCustomer,
  fund,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';
import { TEST_WEBHOOK_SECRET, signatureFor, stripeEvent } from './stripe.js';

let db: Database;
let temporal: Client;
let metrics: Metrics;
let app: App;

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
  metrics = createMetrics();
  app = testApp(db, temporal, uniqueId('obs-metrics'), {
    metrics,
    stripeWebhookSecret: TEST_WEBHOOK_SECRET,
  });
});

afterAll(async () => {
  await temporal?.connection.close();
  await db?.close();
});

async function histogram(name: string, labels: Record<string, string>) {
  const metric = (await metrics.registry.getSingleMetric(name)?.get())!;
  const pick = (suffix: string) =>
    metric.values.find(
      (v) =>
        (v as { metricName?: string }).metricName === `${name}_${suffix}` &&
        Object.entries(labels).every(([k, l]) => v.labels[k] === l),
    )?.value;
  return { count: pick('count'), sum: pick('sum') };
}

describe('webhook processing lag', () => {
  it("is measured from the Stripe event's creation to its processing, once per event", async () => {
    const type = 'customer.obs_lag_test';
    const event = {
      ...stripeEvent(type, { id: 'cus_obs' }),
      created: Math.floor(Date.now() / 1000) - 42,
    };
    const body = JSON.stringify(event);
    const deliver = () =>
      app.request('/webhooks/stripe', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'stripe-signature': signatureFor(body) },
        body,
      });
    expect((await deliver()).status).toBe(200);
    const first = await histogram('creditflow_webhook_lag_seconds', { provider: 'stripe', type });
    expect(first.count).toBe(1);
    expect(first.sum).toBeGreaterThanOrEqual(42);
    expect(first.sum).toBeLessThan(42 + 60);
    // Stripe's redelivery of an event already settled is not processing it again.
    expect((await deliver()).status).toBe(200);
    expect(
      (await histogram('creditflow_webhook_lag_seconds', { provider: 'stripe', type })).count,
    ).toBe(1);
  });
});

describe('ledger write latency', () => {
  it('is observed for every posting, by entry type and outcome', async () => {
    const ledger = createLedger(db.sql, undefined, { latency: metrics.ledgerWriteDuration });
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 10);
    await fund(ledger, customer.id, 5);
    const posted = await histogram('creditflow_ledger_write_duration_seconds', {
      type: 'adjustment',
      status: 'posted',
    });
    expect(posted.count).toBe(2);
    expect(posted.sum).toBeGreaterThan(0);
    // A refusal (more than the wallet holds) is timed too.
    await expect(
      ledger.postEntry({
        idempotencyKey: uniqueId('obs-overdraw'),
        type: 'adjustment',
        description: 'overdraw',
        lines: [
          { account: { wallet: customer.id }, amount: -1000 },
          { account: { system: 'adjustments' }, amount: 1000 },
        ],
      }),
    ).rejects.toThrow();
    expect(
      (
        await histogram('creditflow_ledger_write_duration_seconds', {
          type: 'adjustment',
          status: 'refused',
        })
      ).count,
    ).toBe(1);
  });
});
