// With TEMPORAL_UI_URL set, the operators' responses link each workflow in the Temporal UI; without
// it, the field is absent. Customers never get the link.
import { afterAll, describe, expect, it } from 'vitest';
import { temporalUiLink } from '../src/api/common.js';
import {
  adminToken,
  createCustomer,
  jsonRequest,
  testApp,
  uniqueId,
  useTestApp,
} from './helpers.js';

const UI = 'https://temporal-ui.example.com/';
const t = useTestApp('ui-links', { temporalUiUrl: UI });
const started: string[] = [];

afterAll(async () => {
  // No worker polls this task queue; end what the tests started.
  for (const workflowId of started) {
    await t.temporal.workflow
      .getHandle(workflowId)
      .terminate('test over')
      .catch(() => undefined);
  }
});

const pageOf = (workflowId: string) =>
  `https://temporal-ui.example.com/namespaces/${encodeURIComponent(
    t.temporal.options.namespace,
  )}/workflows/${encodeURIComponent(workflowId)}`;

async function post(app: typeof t.app, path: string, body: unknown) {
  const res = await app.request(
    path,
    jsonRequest('POST', body, await adminToken(), { 'idempotency-key': uniqueId('ui-link') }),
  );
  const json = (await res.json()) as Record<string, unknown>;
  if (typeof json['workflowId'] === 'string') started.push(json['workflowId']);
  return { status: res.status, json };
}

describe('temporalUiLink', () => {
  it('names the namespace and the workflow, escaped, and is empty without a UI URL', () => {
    const temporal = { options: { namespace: 'prod ns' } } as Parameters<
      typeof temporalUiLink
    >[0]['temporal'];
    expect(temporalUiLink({ temporalUiUrl: 'http://ui:8080//', temporal }, 'grant-a/b')).toEqual({
      temporalUiUrl: 'http://ui:8080/namespaces/prod%20ns/workflows/grant-a%2Fb',
    });
    expect(temporalUiLink({ temporalUiUrl: undefined, temporal }, 'grant-1')).toEqual({});
  });
});

describe('operator responses with TEMPORAL_UI_URL', () => {
  it('an adjustment, a grant and a reconciliation answer with their workflow page', async () => {
    const customer = await createCustomer(t.db);
    const adjustment = await post(t.app, '/v1/admin/adjustments', {
      customerId: customer.id,
      amount: 10,
      reason: 'ui link',
    });
    expect(adjustment.status).toBe(202);
    expect(adjustment.json['temporalUiUrl']).toBe(pageOf(adjustment.json['workflowId'] as string));

    const grant = await post(t.app, '/v1/admin/grants', {
      customerId: customer.id,
      credits: 10,
      category: 'promotional',
      reason: 'ui link',
    });
    expect(grant.status).toBe(202);
    expect(grant.json['temporalUiUrl']).toBe(pageOf(grant.json['workflowId'] as string));

    const run = await post(t.app, '/v1/admin/reconciliations', {
      from: '2026-11-20T00:00:00Z',
      to: '2026-11-21T00:00:00Z',
    });
    expect(run.status).toBe(202);
    expect(run.json['temporalUiUrl']).toBe(pageOf(run.json['workflowId'] as string));
  });

  it('carry no link when TEMPORAL_UI_URL is not set', async () => {
    const plain = testApp(t.db, t.temporal, t.taskQueue);
    const customer = await createCustomer(t.db);
    const adjustment = await post(plain, '/v1/admin/adjustments', {
      customerId: customer.id,
      amount: 10,
      reason: 'no ui link',
    });
    expect(adjustment.status).toBe(202);
    expect(adjustment.json).not.toHaveProperty('temporalUiUrl');
  });
});
