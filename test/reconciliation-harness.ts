// A reconciliation test bench: a worker whose Stripe is a stateful double and whose repairs go
// through a real Temporal client, the app for checkouts and webhooks, and runs scoped to the
// customers a test made (the database and Temporal server are shared with every other file).
import type { Client } from '@temporalio/client';
import { createReconciliationActivities } from '../src/activities/reconciliation/index.js';
import type { Activities } from '../src/activities/index.js';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { checkLedger, type Violation } from '../src/ledger/check.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import {
  workflowIds,
  type ReconciliationInput,
  type ReconciliationSummary,
} from '../src/shared.js';
import {
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';
import {
  StripeDouble,
  TEST_WEBHOOK_SECRET,
  sessionObject,
  stripeEvent,
  webhookRequest,
  startStripeDouble,
} from './stripe.js';

export interface FindingRow {
  run_id: string;
  key: string;
  kind: string;
  action: string;
  outcome: string;
  amount: string | null;
  currency: string | null;
}

export interface ReconciliationBench {
  db: Database;
  temporal: Client;
  app: App;
  ledger: Ledger;
  stripe: StripeDouble;
  taskQueue: string;
  /** Violations the ledger checker reports on top of the real ones (no real corruption). */
  injectedViolations: Violation[];
  customer(): Promise<{ id: string; token: string }>;
  /** A checkout through the API; the session exists at the double when this returns. */
  buy(token: string, pack?: string): Promise<string>;
  /** Pays at the double and delivers the signed webhook, then waits until credited. */
  payAndCredit(token: string, paymentId: string): Promise<void>;
  run(
    input: Omit<ReconciliationInput, 'runId'> & { runId?: string },
  ): Promise<{ runId: string; summary: ReconciliationSummary }>;
  findings(runId: string): Promise<FindingRow[]>;
  close(): Promise<void>;
}

export async function startReconciliationBench(
  name: string,
  options: {
    pageSize?: number;
    /** How long a repair may take before a run that still finds it flags it (1 hour). */
    repairGraceMs?: number;
    /** Wraps the real activities (e.g. to make one fail). */
    wrap?: (real: Activities) => Partial<Activities>;
  } = {},
): Promise<ReconciliationBench> {
  const taskQueue = uniqueId(name);
  const db = testDatabase();
  const temporal = await connectTestClient();
  const stripe = await startStripeDouble();
  const ledger = createLedger(db.sql);
  const injectedViolations: Violation[] = [];
  const reconciliation = createReconciliationActivities({
    db,
    ledger,
    stripe: stripe.gateway,
    temporal,
    taskQueue,
    settleGraceMs: 0,
    ...(options.repairGraceMs !== undefined ? { repairGraceMs: options.repairGraceMs } : {}),
    alertLog: { error: () => undefined },
    pageSize: options.pageSize ?? 100,
    checkLedger: async (sql) => {
      const report = await checkLedger(sql);
      const violations = [...report.violations, ...injectedViolations];
      return { ...report, ok: violations.length === 0, violations };
    },
  });
  const worker = await startTestWorker(
    db,
    taskQueue,
    { stripe: stripe.gateway },
    {
      ...reconciliation,
      ...options.wrap?.(reconciliation as unknown as Activities),
    },
  );
  const app = testApp(db, temporal, taskQueue, { stripeWebhookSecret: TEST_WEBHOOK_SECRET });

  const read = async (token: string, id: string) => {
    const res = await app.request(`/v1/checkouts/${id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return (await res.json()) as { status: string };
  };

  return {
    db,
    temporal,
    app,
    ledger,
    stripe,
    taskQueue,
    injectedViolations,
    async customer() {
      const c = await createCustomer(db);
      return { id: c.id, token: await customerToken(c.id) };
    },
    async buy(token, pack = 'small') {
      const res = await app.request('/v1/checkouts', jsonRequest('POST', { pack }, token));
      if (res.status !== 202) throw new Error(`checkout: ${res.status} ${await res.text()}`);
      const { id } = (await res.json()) as { id: string };
      await eventually(() => Promise.resolve(stripe.sessions.has(id) ? true : undefined));
      return id;
    },
    async payAndCredit(token, paymentId) {
      stripe.pay(paymentId);
      const session = stripe.session(paymentId);
      const res = await app.request(
        '/webhooks/stripe',
        webhookRequest(stripeEvent('checkout.session.completed', sessionObject(session))),
      );
      if (res.status !== 200) throw new Error(`webhook: ${res.status}`);
      await eventually(async () =>
        (await read(token, paymentId)).status === 'credited' ? true : undefined,
      );
    },
    async run(input) {
      const runId = input.runId ?? uniqueId('rec');
      const result = await temporal.workflow.execute('reconciliation', {
        taskQueue,
        workflowId: workflowIds.reconciliation(runId),
        args: [{ ...input, runId }],
      });
      const [row] = await db.sql<{ summary: ReconciliationSummary; status: string }[]>`
        select summary, status from reconciliation_runs where id = ${runId}`;
      if (row?.status !== 'completed') throw new Error(`run ${runId} is ${row?.status}`);
      return { runId: (result as { runId: string }).runId, summary: row.summary };
    },
    findings: (runId) => db.sql<FindingRow[]>`
      select run_id, key, kind, action, outcome, amount, currency
      from reconciliation_findings where run_id = ${runId} order by id`,
    async close() {
      await worker.stop();
      await stripe.close();
      await temporal.connection.close();
      await db.close();
    },
  };
}
