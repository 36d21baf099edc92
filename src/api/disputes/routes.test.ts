// GET /v1/disputes and /v1/disputes/:id: a customer sees their own, an admin sees all and filters.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  adminToken,
  createCustomer,
  customerToken,
  useTestApp,
  type TestCustomer,
} from '../../../test/helpers.js';
import { workflowIds } from '../../shared.js';

const bench = useTestApp('disputes-api', {}, { checkLedger: true });

let alice: TestCustomer;
let bob: TestCustomer;
const ids: Record<'aliceOpen' | 'aliceWon' | 'bobLost', string> = {
  aliceOpen: '',
  aliceWon: '',
  bobLost: '',
};

const hex = () => randomBytes(8).toString('hex');

/**
 * A dispute row as the dispute workflow writes it (no credits held: nothing to post), on a
 * payment left `expired` so the checker asks for no top-up entry.
 */
async function seedDispute(customer: TestCustomer, status: 'open' | 'won' | 'lost') {
  const paymentId = `pay_${hex()}`;
  await bench.db.sql`
    insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
    values (${paymentId}, ${workflowIds.checkout(paymentId)}, ${customer.id}, 'small', 100, 500,
            'eur', 'expired')`;
  const id = `dp_test_${hex()}`;
  await bench.db.sql`
    insert into disputes (id, workflow_id, payment_id, customer_id, amount, currency, credits,
                          held_credits, status, reason, closed_at)
    values (${id}, ${workflowIds.dispute(id)}, ${paymentId}, ${customer.id}, 500, 'eur', 100, 0,
            ${status}, 'fraudulent', ${status === 'open' ? null : new Date().toISOString()}::timestamptz)`;
  return id;
}

const get = async (url: string, token: string) => {
  const res = await bench.app.request(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};
const itemIds = (body: Record<string, unknown>) =>
  (body.items as { id: string }[]).map((i) => i.id);

beforeAll(async () => {
  alice = await createCustomer(bench.db);
  bob = await createCustomer(bench.db);
  ids.aliceOpen = await seedDispute(alice, 'open');
  ids.aliceWon = await seedDispute(alice, 'won');
  ids.bobLost = await seedDispute(bob, 'lost');
});

describe('GET /v1/disputes', () => {
  it('lists a customer’s own disputes, newest first, and filters by status', async () => {
    const token = await customerToken(alice.id);
    const all = await get('/v1/disputes', token);
    expect(all.status).toBe(200);
    expect(itemIds(all.body)).toEqual([ids.aliceWon, ids.aliceOpen]);
    expect((all.body.items as unknown[])[1]).toMatchObject({
      id: ids.aliceOpen,
      customerId: alice.id,
      status: 'open',
      credits: 100,
      heldCredits: 0,
      amount: 500,
      currency: 'eur',
      reason: 'fraudulent',
      closedAt: null,
    });
    const open = await get('/v1/disputes?status=open', token);
    expect(itemIds(open.body)).toEqual([ids.aliceOpen]);
    const paged = await get('/v1/disputes?limit=1', token);
    expect(itemIds(paged.body)).toEqual([ids.aliceWon]);
    expect(paged.body.nextCursor).toBe(ids.aliceWon);
    const next = await get(`/v1/disputes?limit=1&cursor=${ids.aliceWon}`, token);
    expect(itemIds(next.body)).toEqual([ids.aliceOpen]);
  });

  it('refuses another customer’s id and bad filters', async () => {
    const token = await customerToken(bob.id);
    expect((await get(`/v1/disputes?customerId=${alice.id}`, token)).status).toBe(403);
    expect((await get('/v1/disputes?status=closed', token)).status).toBe(400);
    expect((await get('/v1/disputes?cursor=nope', token)).status).toBe(400);
    expect(itemIds((await get('/v1/disputes', token)).body)).toEqual([ids.bobLost]);
  });

  it('shows an admin every dispute, or one customer’s', async () => {
    const admin = await adminToken();
    const all = await get('/v1/disputes?limit=200', admin);
    expect(itemIds(all.body)).toEqual(
      expect.arrayContaining([ids.aliceOpen, ids.aliceWon, ids.bobLost]),
    );
    const bobs = await get(`/v1/disputes?customerId=${bob.id}`, admin);
    expect(itemIds(bobs.body)).toEqual([ids.bobLost]);
    const lost = await get(`/v1/disputes?customerId=${alice.id}&status=lost`, admin);
    expect(itemIds(lost.body)).toEqual([]);
  });
});

describe('GET /v1/disputes/:id', () => {
  it('answers the owner and an admin; another customer learns nothing', async () => {
    const own = await get(`/v1/disputes/${ids.aliceOpen}`, await customerToken(alice.id));
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ id: ids.aliceOpen, status: 'open' });
    const admin = await get(`/v1/disputes/${ids.bobLost}`, await adminToken());
    expect(admin.body).toMatchObject({ id: ids.bobLost, status: 'lost' });
    const other = await get(`/v1/disputes/${ids.aliceOpen}`, await customerToken(bob.id));
    expect(other.status).toBe(404);
    expect(JSON.stringify(other.body)).not.toContain(alice.id);
    expect((await get('/v1/disputes/dp_unknown', await adminToken())).status).toBe(404);
    expect((await get('/v1/disputes/not-a-dispute', await adminToken())).status).toBe(400);
  });
});
