// The production topology (npm run stack:prod): the Temporal server on PostgreSQL with the Temporal
// UI, two workers and two API processes from dist/ on plain node. A purchase made through one API is read through the
// other, and a flow whose only worker was SIGKILLed finishes once that worker is restarted.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mintToken } from '../src/api/auth.js';
import { signSmsBody } from '../src/api/webhooks/sms.js';
import { processEnv } from '../src/config.js';
import { ensureBuild } from '../src/stack/build.js';
import { startProdStack, type ProdStack, type StackApi } from '../src/stack/prod.js';
import { findTemporalServer, temporalServerMissingMessage } from '../src/stack/tools.js';
import { eventually } from './helpers.js';

const env = processEnv();
const suffix = randomBytes(4).toString('hex');
const service = `stack-${suffix}`;
const PRICE = 30;
let stack: ProdStack;
let admin: string;

beforeAll(async () => {
  // A missing server is a failure that says how to get it, never a skip.
  const tools = findTemporalServer(env);
  if (!tools) throw new Error(temporalServerMissingMessage(env));
  await ensureBuild({ log: () => undefined });
  const server = new URL(inject('ownerDatabaseUrl'));
  server.pathname = '/postgres';
  stack = await startProdStack({
    env,
    log: () => undefined,
    tools,
    postgresUrl: server.toString(),
    name: `creditflow_stacktest_${suffix}`,
    stripeApiBase: inject('stripeApiBase'),
    apiPort: 0,
    ephemeral: true,
    appEnv: { LOG_LEVEL: 'warn', RECONCILIATION_SCHEDULES: 'false' },
  });
  admin = await mintToken(stack.secrets.AUTH_JWT_SECRET, { sub: 'stack-test', role: 'admin' }, 600);
}, 240_000);

afterAll(async () => {
  await stack?.stop();
  await stack?.dropDatabases();
}, 120_000);

async function call(
  api: StackApi,
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A customer with a wallet of `credits`, made through the API the way an operator would. */
async function fundedCustomer(api: StackApi, credits: number) {
  const created = await call(api, 'POST', '/v1/customers', admin, {
    email: `stack-${randomBytes(6).toString('hex')}@example.test`,
  });
  expect(created.status).toBe(201);
  const customerId = created.body['id'] as string;
  const adjusted = await call(
    api,
    'POST',
    '/v1/admin/adjustments',
    admin,
    { customerId, amount: credits, reason: 'stack test funding' },
    { 'idempotency-key': `fund-${customerId}` },
  );
  expect(adjusted.status).toBe(202);
  const token = await mintToken(
    stack.secrets.AUTH_JWT_SECRET,
    { sub: customerId, role: 'customer' },
    600,
  );
  await eventually(async () => {
    const wallet = await call(api, 'GET', '/v1/wallet', token);
    return wallet.body['balance'] === credits ? true : undefined;
  });
  return { customerId, token };
}

async function verificationStatus(api: StackApi, id: string, token: string) {
  const state = await call(api, 'GET', `/v1/verifications/${id}`, token);
  return state.body['status'] as string | undefined;
}

async function deliverCode(api: StackApi, verificationId: string, code: string) {
  const body = JSON.stringify({ verificationId, code });
  const res = await fetch(`${api.url}/webhooks/sms`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-signature': signSmsBody(stack.secrets.SMS_WEBHOOK_SECRET, body),
    },
    body,
  });
  expect(res.status, await res.clone().text()).toBeLessThan(300);
}

describe('the production topology', () => {
  it('runs each part as its own process, on the Temporal server over PostgreSQL', async () => {
    const pids = [stack.temporal, ...stack.workers, ...stack.apis].map((p) => p.pid);
    expect(new Set(pids).size).toBe(5);
    expect(pids).not.toContain(process.pid);
    const connections = await stack.connections();
    expect(connections.temporal).toBeGreaterThan(0);
    expect(connections.temporalVisibility).toBeGreaterThan(0);
    expect(connections.app['creditflow-api']).toBeGreaterThan(0);
    expect(connections.app['creditflow-worker']).toBeGreaterThan(0);
    const price = await call(stack.apis[0]!, 'PUT', `/v1/admin/prices/${service}/US`, admin, {
      price: PRICE,
    });
    expect(price.status).toBe(200);
  });

  it('completes a verification bought through API 1 and read through API 2', async () => {
    const [api1, api2] = [stack.apis[0]!, stack.apis[1]!];
    const { token } = await fundedCustomer(api1, 100);
    const bought = await call(api1, 'POST', '/v1/verifications', token, {
      service,
      country: 'US',
    });
    expect(bought.status).toBe(202);
    const id = bought.body['id'] as string;
    await eventually(async () =>
      (await verificationStatus(api2, id, token)) === 'active' ? true : undefined,
    );
    await deliverCode(api2, id, '123456');
    await eventually(async () =>
      (await verificationStatus(api2, id, token)) === 'completed' ? true : undefined,
    );
    const read = await call(api2, 'GET', `/v1/verifications/${id}`, token);
    expect(read.body).toMatchObject({ status: 'completed', code: '123456', price: PRICE });
    expect((await call(api1, 'GET', '/v1/wallet', token)).body['balance']).toBe(100 - PRICE);
  });

  it('runs the Temporal UI against this cluster, and the API links operators to it', async () => {
    const ui = stack.ui;
    expect(ui, 'the Temporal UI server (npm run tools builds it)').toBeDefined();
    expect([stack.temporal.pid, ...stack.workers.map((w) => w.pid)]).not.toContain(ui!.pid);
    const customer = await call(stack.apis[0]!, 'POST', '/v1/customers', admin, {
      email: `stack-ui-${randomBytes(6).toString('hex')}@example.test`,
    });
    const adjusted = await call(
      stack.apis[1]!,
      'POST',
      '/v1/admin/adjustments',
      admin,
      { customerId: customer.body['id'], amount: 5, reason: 'stack test: UI link' },
      { 'idempotency-key': `ui-${customer.body['id'] as string}` },
    );
    expect(adjusted.status).toBe(202);
    const workflowId = adjusted.body['workflowId'] as string;
    const ns = encodeURIComponent(stack.temporal.namespace);
    expect(adjusted.body['temporalUiUrl']).toBe(
      `${ui!.url}/namespaces/${ns}/workflows/${encodeURIComponent(workflowId)}`,
    );
    // The page is the UI's; what it shows comes from the cluster through the UI server's API.
    expect((await fetch(adjusted.body['temporalUiUrl'] as string)).status).toBe(200);
    const described = await eventually(async () => {
      const res = await fetch(
        `${ui!.url}/api/v1/namespaces/${ns}/workflows/${encodeURIComponent(workflowId)}`,
      );
      type Described = { workflowExecutionInfo?: { execution?: { workflowId?: string } } };
      return res.ok ? ((await res.json()) as Described) : undefined;
    });
    expect(described.workflowExecutionInfo?.execution?.workflowId).toBe(workflowId);
  });

  it('finishes a flow whose only worker was SIGKILLed, once that worker is restarted', async () => {
    const [api1, api2] = [stack.apis[0]!, stack.apis[1]!];
    const [worker1, worker2] = [stack.workers[0]!, stack.workers[1]!];
    // Worker 2 leaves cleanly, so worker 1 is the only one and its death stops the flow.
    await worker2.stop();
    const { token } = await fundedCustomer(api1, 100);
    const bought = await call(api2, 'POST', '/v1/verifications', token, {
      service,
      country: 'US',
    });
    expect(bought.status).toBe(202);
    const id = bought.body['id'] as string;
    await eventually(async () =>
      (await verificationStatus(api1, id, token)) === 'active' ? true : undefined,
    );

    const killedPid = worker1.pid;
    worker1.kill('SIGKILL');
    expect(await worker1.exited).toBeNull();
    // Temporal takes the code while no worker runs; the workflow acts on it after the restart.
    await deliverCode(api1, id, '654321');
    await worker1.restart();
    expect(worker1.pid).not.toBe(killedPid);

    await eventually(
      async () => ((await verificationStatus(api2, id, token)) === 'completed' ? true : undefined),
      { timeoutMs: 60_000 },
    );
    expect((await call(api2, 'GET', '/v1/wallet', token)).body['balance']).toBe(100 - PRICE);
    await worker2.restart();
  });
});
