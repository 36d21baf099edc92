// Admin reconciliation routes: start a run (202), list runs newest first with paging, read one
// report with its findings; admins only, and bad windows refused.
import { afterAll, describe, expect, it } from 'vitest';
import type { ReconciliationInput } from '../../shared.js';
import {
  adminToken,
  customerToken,
  jsonRequest,
  uniqueId,
  useTestApp,
} from '../../../test/helpers.js';

const t = useTestApp('reconciliation-routes');
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

async function post(body: unknown, key?: string, token?: string) {
  const res = await t.app.request(
    '/v1/admin/reconciliations',
    jsonRequest('POST', body, token ?? (await adminToken()), key ? { 'idempotency-key': key } : {}),
  );
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status === 202) started.push(json.workflowId as string);
  return { status: res.status, json };
}

async function get(path: string, token?: string) {
  const res = await t.app.request(path, {
    headers: { authorization: `Bearer ${token ?? (await adminToken())}` },
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('POST /v1/admin/reconciliations', () => {
  it('starts a run for the window and answers 202; the same key names the same run', async () => {
    const key = uniqueId('reconcile');
    const window = { from: '2026-11-20T00:00:00Z', to: '2026-11-21T00:00:00Z' };
    const first = await post(window, key);
    expect(first.status).toBe(202);
    expect(first.json).toEqual({
      id: expect.stringMatching(/^rec_[0-9a-f]{32}$/),
      workflowId: `reconciliation-${first.json.id as string}`,
      status: 'running',
    });
    const handle = t.temporal.workflow.getHandle(first.json.workflowId as string);
    const description = await handle.describe();
    expect(description.type).toBe('reconciliation');
    expect(description.taskQueue).toBe(t.taskQueue);
    expect(description.memo?.input).toEqual({
      runId: first.json.id as string,
      trigger: 'manual',
      from: '2026-11-20T00:00:00.000Z',
      to: '2026-11-21T00:00:00.000Z',
    } satisfies ReconciliationInput);

    const again = await post(window, key);
    expect(again).toEqual(first);
    const conflict = await post({ ...window, to: '2026-11-22T00:00:00Z' }, key);
    expect(conflict.status).toBe(409);
    expect((conflict.json.error as { code: string }).code).toBe('idempotency_conflict');
  });

  it('without a window covers the last day', async () => {
    const before = Date.now();
    const res = await post({});
    expect(res.status).toBe(202);
    const description = await t.temporal.workflow
      .getHandle(res.json.workflowId as string)
      .describe();
    const input = description.memo?.input as ReconciliationInput;
    const to = new Date(input.to!).getTime();
    expect(to).toBeGreaterThanOrEqual(before - 1000);
    expect(to - new Date(input.from!).getTime()).toBe(24 * 60 * 60 * 1000);
  });

  it.each([
    ['from not before to', { from: '2026-11-21T00:00:00Z', to: '2026-11-21T00:00:00Z' }],
    ['from after to', { from: '2026-11-22T00:00:00Z', to: '2026-11-21T00:00:00Z' }],
    ['longer than 31 days', { from: '2026-01-01T00:00:00Z', to: '2026-03-01T00:00:00Z' }],
    ['unparseable', { from: 'yesterday' }],
    ['a date without a time', { from: '2026-11-20', to: '2026-11-21T00:00:00Z' }],
    ['an impossible date', { to: '2026-13-45T00:00:00Z' }],
  ])('refuses a bad window: %s', async (_name, body) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expect((res.json.error as { code: string }).code).toBe('invalid_window');
  });

  it('refuses unknown fields', async () => {
    expect((await post({ from: '2026-11-20T00:00:00Z', customerIds: [] })).status).toBe(400);
  });

  it('is for admins only', async () => {
    const token = await customerToken('7f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f');
    expect((await post({}, undefined, token)).status).toBe(403);
    expect((await get('/v1/admin/reconciliations', token)).status).toBe(403);
    expect((await get('/v1/admin/reconciliations/rec_x', token)).status).toBe(403);
  });
});

describe('GET /v1/admin/reconciliations', () => {
  it('lists runs newest first, a page at a time, and shows one with its findings', async () => {
    const ids = [uniqueId('run-a'), uniqueId('run-b'), uniqueId('run-c')];
    // Far in the future, so these three are the newest whatever else the database holds.
    for (const [i, id] of ids.entries()) {
      await t.db.sql`
        insert into reconciliation_runs (id, workflow_id, trigger, window_from, window_to, status,
                                         summary, matched, findings_count, started_at, finished_at)
        values (${id}, ${`reconciliation-${id}`}, 'manual', '2026-11-20T00:00:00Z',
                '2026-11-21T00:00:00Z', 'completed',
                ${JSON.stringify({ categories: { amount_mismatch: { count: 1, sums: { eur: 999 }, repaired: 0, flagged: 1 } } })}::jsonb,
                ${10 + i}, 1, ${`2099-01-0${i + 1}T00:00:00Z`}, ${`2099-01-0${i + 1}T00:01:00Z`})`;
    }
    await t.db.sql`
      insert into reconciliation_findings (run_id, key, kind, refs, amount, currency, action, outcome)
      values (${ids[2]!}, 'amount_mismatch:pay_x:pi_x', 'amount_mismatch',
              ${JSON.stringify({ paymentId: 'pay_x' })}::jsonb, 999, 'eur', 'flagged', 'alert raised')`;

    const first = await get('/v1/admin/reconciliations?limit=2');
    expect(first.status).toBe(200);
    const items = first.json.items as Array<{ id: string }>;
    expect(items.map((r) => r.id)).toEqual([ids[2], ids[1]]);
    const second = await get(
      `/v1/admin/reconciliations?limit=2&cursor=${first.json.nextCursor as string}`,
    );
    expect((second.json.items as Array<{ id: string }>)[0]!.id).toBe(ids[0]);

    const one = await get(`/v1/admin/reconciliations/${ids[2]!}`);
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({
      id: ids[2],
      status: 'completed',
      trigger: 'manual',
      window: { from: '2026-11-20T00:00:00.000Z', to: '2026-11-21T00:00:00.000Z' },
      matched: 12,
      findingsCount: 1,
      summary: { categories: { amount_mismatch: { count: 1, flagged: 1 } } },
      findings: [
        {
          key: 'amount_mismatch:pay_x:pi_x',
          kind: 'amount_mismatch',
          refs: { paymentId: 'pay_x' },
          amount: 999,
          currency: 'eur',
          action: 'flagged',
          outcome: 'alert raised',
        },
      ],
      findingsTruncated: false,
    });
    await t.db.sql`delete from reconciliation_findings where run_id = ${ids[2]!}`;
    await t.db.sql`delete from reconciliation_runs where id = any(${ids})`;
  });

  it('answers 404 for an unknown run and 400 for a bad cursor or id', async () => {
    expect((await get('/v1/admin/reconciliations/rec_nothing')).status).toBe(404);
    expect((await get('/v1/admin/reconciliations?cursor=bogus')).status).toBe(400);
    expect((await get('/v1/admin/reconciliations?limit=0')).status).toBe(400);
    expect((await get('/v1/admin/reconciliations/bad%20id')).status).toBe(400);
  });
});
