// One flow through the API and a worker in its own process (src/worker.ts, logging JSON lines):
// the request id the API gave the request is on its log lines and on the worker's lines for that
// flow; the worker's metrics show the workflow's outcome, the ledger write latency and the outbox
// backlog, and the Temporal runtime's own metrics answer on their port. Last, SIGTERM in the middle
// of an activity: the worker lets it finish before it exits.
import { Client, Connection } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import { clientInterceptors } from '../src/observability/temporal-interceptors.js';
import { freePort } from '../src/stack/ports.js';
import {
  createCustomer,
  customerToken,
  eventually,
  fund,
  jsonRequest,
  runWorkerProcess,
  spawnWorkerProcess,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';

type LogLine = Record<string, unknown> & { msg?: string; requestId?: string; workflowId?: string };

const apiLines: string[] = [];
const apiLogger = createLogger({
  level: 'debug',
  destination: { write: (line: string) => void apiLines.push(line) },
});

const parse = (text: string): LogLine[] =>
  text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);

/** A sample's value in Prometheus text, by metric name and the labels it must carry. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

const refused = `obs-refused-${randomBytes(4).toString('hex')}`;
const slow = `obs-slow-${randomBytes(4).toString('hex')}`;
const taskQueue = uniqueId('observability');
let db: Database;
let temporal: Client;
let app: App;
let worker: Awaited<ReturnType<typeof spawnWorkerProcess>>;
let temporalMetricsPort: number;

beforeAll(async () => {
  db = testDatabase();
  await db.sql`insert into prices (service, country, price)
    values (${refused}, 'US', 30), (${slow}, 'US', 20)`;
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  // As the API builds it: workflow starts carry the request being served.
  temporal = new Client({
    connection,
    namespace: inject('temporalNamespace'),
    interceptors: { workflow: clientInterceptors(undefined) },
  });
  app = testApp(db, temporal, taskQueue, { logger: apiLogger, metrics: createMetrics() });
  temporalMetricsPort = await freePort();
  worker = await spawnWorkerProcess(taskQueue, {
    LOG_LEVEL: 'info',
    WORKER_TEMPORAL_METRICS_PORT: String(temporalMetricsPort),
    // No number for `refused` (refunded at once); every provider call takes a while, so SIGTERM
    // finds the rental of `slow` in flight.
    SMS_SIMULATED_UNAVAILABLE_SERVICES: refused,
    SMS_SIMULATED_DELAY_MS: '1500',
  });
});

afterAll(async () => {
  await worker?.stop();
  if (db) await db.sql`delete from prices where service in (${refused}, ${slow})`;
  await temporal?.connection.close();
  await db?.close();
});

async function buyVerification(service: string) {
  const customer = await createCustomer(db);
  await fund(createLedger(db.sql), customer.id, 100);
  const res = await app.request(
    '/v1/verifications',
    jsonRequest('POST', { service, country: 'US' }, await customerToken(customer.id)),
  );
  expect(res.status).toBe(202);
  const { workflowId } = (await res.json()) as { workflowId: string };
  return { workflowId, requestId: res.headers.get('x-request-id') };
}

describe('a flow through the API and a worker process', () => {
  it('carries the request id on the API and worker log lines, and shows in the metrics', async () => {
    const { workflowId, requestId } = await buyVerification(refused);
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    const result = (await temporal.workflow.getHandle(workflowId).result()) as { status: string };
    expect(result.status).toBe('refunded');

    // The API: the request's own line names it.
    const api = parse(apiLines.join('')).filter((l) => l.requestId === requestId);
    expect(api.map((l) => l.msg)).toContain('request');
    // The worker: its lines for the flow — the workflow's own and its activities' (the refused
    // rental, the refund) — all name the request.
    const flowLines = await eventually(() => {
      const lines = parse(worker.output.join('')).filter((l) => l.workflowId === workflowId);
      return Promise.resolve(
        lines.some((l) => l.msg === 'verification refunded') ? lines : undefined,
      );
    });
    expect(flowLines.map((l) => l['component'])).toEqual(
      expect.arrayContaining(['workflow', 'activity']),
    );
    for (const line of flowLines) expect(line, JSON.stringify(line)).toMatchObject({ requestId });

    // The worker's metrics: how the workflow closed, how long its postings took, the backlog.
    const metrics = await eventually(async () => {
      const text = await (await fetch(worker.metricsUrl)).text();
      return (sample(text, 'creditflow_outbox_messages', {
        task_queue: taskQueue,
        state: 'pending',
      }) ?? -1) === 0
        ? text
        : undefined;
    });
    expect(
      sample(metrics, 'creditflow_workflow_outcomes_total', {
        workflow_type: 'verificationPurchase',
        outcome: 'completed',
      }),
    ).toBe(1);
    // The debit and its refund: two postings, each well under a second.
    const posted = sample(metrics, 'creditflow_ledger_write_duration_seconds_count', {
      status: 'posted',
    });
    const seconds = sample(metrics, 'creditflow_ledger_write_duration_seconds_sum', {
      status: 'posted',
    });
    expect(posted).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeGreaterThan(0);
    expect(seconds! / posted!).toBeLessThan(5);

    // The Temporal runtime's own metrics, on their port, about this task queue.
    const runtime = await (await fetch(`http://127.0.0.1:${temporalMetricsPort}/metrics`)).text();
    expect(
      sample(runtime, 'temporal_workflow_completed', {
        task_queue: taskQueue,
        workflow_type: 'verificationPurchase',
      }),
    ).toBe(1);
  });

  it('lets an activity in flight finish when the worker gets SIGTERM', async () => {
    const { workflowId } = await buyVerification(slow);
    const handle = temporal.workflow.getHandle(workflowId);
    // The rental has started on the worker (it takes 1.5 s at the simulated provider).
    await eventually(
      async () => {
        const { raw } = await handle.describe();
        return raw.pendingActivities?.some(
          (a) =>
            a.activityType?.name === 'rentNumber' &&
            a.state === proto.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        )
          ? true
          : undefined;
      },
      { intervalMs: 20 },
    );
    await worker.stop();
    expect(await worker.exited).toBe(0);
    expect(parse(worker.output.join('')).map((l) => l.msg)).toContain('worker stopped');

    const { events } = await handle.fetchHistory();
    const scheduled = events!.find(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'rentNumber',
    );
    expect(scheduled).toBeDefined();
    const outcome = events!.find((e) =>
      [
        e.activityTaskCompletedEventAttributes,
        e.activityTaskFailedEventAttributes,
        e.activityTaskTimedOutEventAttributes,
        e.activityTaskCanceledEventAttributes,
      ].some((a) => a?.scheduledEventId?.toString() === scheduled!.eventId!.toString()),
    );
    expect(outcome?.activityTaskCompletedEventAttributes).toBeTruthy();
    await handle.terminate('test over: the rental was the point');
  });

  it('refuses to start, naming WORKER_TEMPORAL_METRICS_PORT, when that port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const { code, stderr } = await runWorkerProcess({
        WORKER_TEMPORAL_METRICS_PORT: String(port),
        WORKER_METRICS_PORT: String(await freePort()),
      }).exited;
      expect(code).toBe(1);
      expect(stderr).toContain(`WORKER_TEMPORAL_METRICS_PORT: ${port} cannot be served`);
      expect(stderr).not.toMatch(/^\s+at /m);
    } finally {
      taken.close();
    }
  });
});
