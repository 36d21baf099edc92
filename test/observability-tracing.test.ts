// Tracing on (an OTLP endpoint set): one trace runs from the API call — its server span a child of
// the caller's traceparent — through the workflow start, the workflow and each of its activities,
// and every span reaches the OTLP/HTTP endpoint (a receiver in this test, decoding the JSON).
import { Client, Connection } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import { clientInterceptors } from '../src/observability/temporal-interceptors.js';
import { startTracing, type Tracing } from '../src/observability/tracing.js';
import { SimulatedSmsProvider } from '../src/sms/provider.js';
import { createActivities } from '../src/activities/index.js';
import { createWorker } from '../src/temporal.js';
import {
  createCustomer,
  customerToken,
  eventually,
  fund,
  jsonRequest,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  service: string;
}

/** A bare OTLP/HTTP receiver: keeps every span of every JSON export request. */
function startOtlpReceiver(): Promise<{ server: Server; url: string; spans: ReceivedSpan[] }> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const request = JSON.parse(body) as {
        resourceSpans: Array<{
          resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
          scopeSpans: Array<{ spans: Array<Omit<ReceivedSpan, 'service'>> }>;
        }>;
      };
      for (const { resource, scopeSpans } of request.resourceSpans) {
        const service =
          resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const scope of scopeSpans)
          for (const span of scope.spans) spans.push({ ...span, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, url: `http://127.0.0.1:${port}/v1/traces`, spans });
    }),
  );
}

const service = `trace-${randomBytes(4).toString('hex')}`;
let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
let tracing: Tracing;
let db: Database;
let temporal: Client;
let app: App;
let worker: Awaited<ReturnType<typeof createWorker>>;
let running: Promise<void>;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  tracing = startTracing({ endpoint: receiver.url, serviceName: 'creditflow-test' })!;
  db = testDatabase();
  await db.sql`insert into prices (service, country, price) values (${service}, 'US', 25)`;
  const taskQueue = uniqueId('tracing');
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  temporal = new Client({
    connection,
    namespace: inject('temporalNamespace'),
    interceptors: { workflow: clientInterceptors(tracing) },
  });
  app = testApp(db, temporal, taskQueue);
  // Bundled here, with OpenTelemetry's workflow interceptors (the run's shared bundle has none).
  worker = await createWorker({
    target: { address: inject('temporalAddress'), namespace: inject('temporalNamespace') },
    taskQueue,
    // The provider has no number for this service: the purchase is refunded, and the flow ends.
    activities: createActivities({
      db,
      sms: new SimulatedSmsProvider({ unavailableServices: [service] }),
    }),
    observability: { tracing },
  });
  running = worker.worker.run();
});

afterAll(async () => {
  if (worker?.worker.getState() === 'RUNNING') worker.worker.shutdown();
  await running;
  await worker?.connection.close();
  if (db) await db.sql`delete from prices where service = ${service}`;
  await temporal?.connection.close();
  await db?.close();
  receiver?.server.close();
});

describe('a traced verification purchase', () => {
  it('is one trace from the HTTP request through the workflow and its activities', async () => {
    const customer = await createCustomer(db);
    await fund(createLedger(db.sql), customer.id, 100);
    const token = await customerToken(customer.id);
    const callerTrace = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');

    const res = await app.request(
      '/v1/verifications',
      jsonRequest('POST', { service, country: 'US' }, token, {
        traceparent: `00-${callerTrace}-${callerSpan}-01`,
      }),
    );
    expect(res.status).toBe(202);
    const { workflowId } = (await res.json()) as { workflowId: string };
    const result = (await temporal.workflow.getHandle(workflowId).result()) as { status: string };
    expect(result.status).toBe('refunded');

    const trace = await eventually(async () => {
      await tracing.flush();
      const spans = receiver.spans.filter((s) => s.traceId === callerTrace);
      const names = spans.map((s) => s.name);
      return names.includes('RunWorkflow:verificationPurchase') &&
        names.includes('RunActivity:refundVerification')
        ? spans
        : undefined;
    });
    const named = (name: string) => {
      const span = trace.find((s) => s.name === name);
      expect(span, `span ${name} in ${trace.map((s) => s.name).join(', ')}`).toBeDefined();
      return span!;
    };
    // The API's server span continues the caller's trace; the workflow start runs inside it.
    const http = named('POST /v1/verifications');
    expect(http.parentSpanId).toBe(callerSpan);
    expect(http.kind).toBe(2); // SERVER
    // The purchase starts and waits for its debit in one update-with-start call.
    const start = named('UpdateWithStartWorkflow:debitSettled');
    expect(start.parentSpanId).toBe(http.spanId);
    // The workflow and its activities (debit, the refused rental, the refund) in the same trace.
    const run = named('RunWorkflow:verificationPurchase');
    expect(run.parentSpanId).toBe(start.spanId);
    for (const activity of ['debitVerification', 'rentNumber', 'refundVerification']) {
      expect(named(`RunActivity:${activity}`).traceId).toBe(callerTrace);
    }
    expect(new Set(trace.map((s) => s.service))).toEqual(new Set(['creditflow-test']));
  });
});
