// Shared set-up for verification tests: a worker with a simulated provider, prices of the file's
// own, and small HTTP helpers for buying, following, cancelling and delivering codes.
import type { Client } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import type { Activities } from '../src/activities/index.js';
import { signSmsBody } from '../src/api/webhooks/sms.js';
import { createMetrics } from '../src/metrics.js';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import { SimulatedSmsProvider } from '../src/sms/provider.js';
import {
  SMS_SECRET,
  connectTestClient,
  customerToken,
  eventually,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
  type TestOutboxOptions,
} from './helpers.js';

export interface Verification {
  id: string;
  status: string;
  price: number;
  phoneNumber?: string;
  code?: string;
  refundReason?: string;
  error?: { code: string };
}

export async function verificationHarness(
  name: string,
  options: {
    price?: number;
    overrides?: Partial<Activities>;
    /** The outbox dispatcher's settings, delivery channel and logger. */
    outbox?: TestOutboxOptions;
  } = {},
) {
  const suffix = randomBytes(4).toString('hex');
  const service = `${name}-${suffix}`;
  const failingService = `${name}-down-${suffix}`;
  const lostService = `${name}-lost-${suffix}`;
  const price = options.price ?? 50;
  const db: Database = testDatabase(20);
  const ledger: Ledger = createLedger(db.sql);
  const temporal: Client = await connectTestClient();
  const taskQueue = uniqueId(name);
  const sms = new SimulatedSmsProvider({
    unavailableServices: [failingService],
    lostAnswerServices: [lostService],
  });
  await db.sql`
    insert into prices (service, country, price)
    values (${service}, 'US', ${price}), (${failingService}, 'US', ${price}), (${lostService}, 'US', ${price})`;
  const metrics = createMetrics();
  const worker = await startTestWorker(db, taskQueue, { sms, metrics }, options.overrides, {
    metrics,
    ...options.outbox,
  });
  const app = testApp(db, temporal, taskQueue);

  const h = {
    db,
    ledger,
    temporal,
    app,
    sms,
    metrics,
    taskQueue,
    dispatcher: worker.dispatcher,
    service,
    failingService,
    lostService,
    price,
    async buy(customerId: string, body: Record<string, unknown> = {}, key?: string) {
      return app.request(
        '/v1/verifications',
        jsonRequest(
          'POST',
          { service, country: 'US', ...body },
          await customerToken(customerId),
          key ? { 'idempotency-key': key } : {},
        ),
      );
    },
    async get(customerId: string, id: string): Promise<Verification> {
      const res = await app.request(`/v1/verifications/${id}`, {
        headers: { authorization: `Bearer ${await customerToken(customerId)}` },
      });
      return (await res.json()) as Verification;
    },
    async waitFor(customerId: string, id: string, statuses: string[], timeoutMs = 20_000) {
      const found = await eventually(
        async () => {
          const v = await h.get(customerId, id);
          return statuses.includes(v.status) ? v : undefined;
        },
        { timeoutMs, intervalMs: 50 },
      );
      // A final outcome is recorded first; the cleanup after it (number release, notices) is
      // done by the time the run closes.
      if (['completed', 'refunded', 'failed'].includes(found.status)) {
        await temporal.workflow
          .getHandle(`verification-${id}`)
          .result()
          .catch(() => undefined);
      }
      return found;
    },
    async cancel(customerId: string, id: string) {
      return app.request(`/v1/verifications/${id}/cancel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await customerToken(customerId)}` },
      });
    },
    async deliverCode(id: string, code: string, secret = SMS_SECRET) {
      const body = JSON.stringify({ verificationId: id, code });
      return app.request('/webhooks/sms', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-signature': signSmsBody(secret, body) },
        body,
      });
    },
    async entryTypes(id: string): Promise<string[]> {
      const rows = await db.sql<{ type: string }[]>`
        select type from entries where workflow_id = ${`verification-${id}`} order by id`;
      return rows.map((r) => r.type);
    },
    async close() {
      await worker.stop();
      await db.sql`delete from prices where service in (${service}, ${failingService}, ${lostService})`;
      await temporal.connection.close();
      await db.close();
    },
  };
  return h;
}

export type VerificationHarness = Awaited<ReturnType<typeof verificationHarness>>;
