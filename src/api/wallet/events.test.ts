// The caps on open wallet event streams: a customer holding every slot gets 429 with
// Retry-After, closing a stream gives its slot back, and other customers are not affected; a
// process holding its cap of streams answers 503 with Retry-After for anyone.
import { describe, expect, it } from 'vitest';
import {
  adminToken,
  createCustomer,
  customerToken,
  testApp,
  useTestApp,
} from '../../../test/helpers.js';
import { loadConfig } from '../../config.js';
import { createStreamSlots } from './events.js';

const t = useTestApp('wallet-events');

/** Opens a stream and reads its first event, so it is known to be open. */
async function openStream(app: ReturnType<typeof testApp>, token: string, query = '') {
  const res = await app.request(`/v1/wallet/events${query}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (res.status !== 200) return { res, close: () => Promise.resolve() };
  const reader = res.body!.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toContain('event: balance');
  return { res, close: () => reader.cancel() };
}

describe('open event streams per customer', () => {
  it('answers 429 with Retry-After past the cap, and a closed stream frees its slot', async () => {
    const app = testApp(t.db, t.temporal, t.taskQueue, {}, { sseMaxStreamsPerCustomer: 2 });
    const customer = await createCustomer(t.db);
    const other = await createCustomer(t.db);
    const token = await customerToken(customer.id);

    const first = await openStream(app, token);
    const second = await openStream(app, token);
    expect([first.res.status, second.res.status]).toEqual([200, 200]);

    const third = await openStream(app, token);
    expect(third.res.status).toBe(429);
    expect(Number(third.res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await third.res.json()).toMatchObject({ error: { code: 'too_many_streams' } });
    // An admin watching this customer's wallet uses the customer's slots too.
    const admin = await openStream(app, await adminToken(), `?customerId=${customer.id}`);
    expect(admin.res.status).toBe(429);

    // Another customer is not affected.
    const others = await openStream(app, await customerToken(other.id));
    expect(others.res.status).toBe(200);

    await first.close();
    const again = await openStream(app, token);
    expect(again.res.status).toBe(200);
    expect((await openStream(app, token)).res.status).toBe(429);

    for (const s of [second, again, others]) await s.close();
  });

  it('allows five streams per customer by default', async () => {
    const customer = await createCustomer(t.db);
    const token = await customerToken(customer.id);
    const open = [];
    for (let i = 0; i < 5; i++) open.push(await openStream(t.app, token));
    expect(open.map((s) => s.res.status)).toEqual([200, 200, 200, 200, 200]);
    expect((await openStream(t.app, token)).res.status).toBe(429);
    for (const s of open) await s.close();
    expect(loadConfig({}).http.sseMaxStreamsPerCustomer).toBe(5);
    expect(loadConfig({ SSE_MAX_STREAMS_PER_CUSTOMER: '12' }).http.sseMaxStreamsPerCustomer).toBe(
      12,
    );
    expect(() => loadConfig({ SSE_MAX_STREAMS_PER_CUSTOMER: '0' })).toThrow(
      /SSE_MAX_STREAMS_PER_CUSTOMER/,
    );
  });

  it('gives a slot back once however often it is released', () => {
    const slots = createStreamSlots(1, 2);
    const release = slots.acquire('c');
    if (typeof release !== 'function') throw new Error(`refused: ${release}`);
    expect(slots.acquire('c')).toBe('customer');
    release();
    release();
    expect(typeof slots.acquire('c')).toBe('function');
    expect(slots.acquire('c')).toBe('customer');
    // The one release above freed one process slot, not two: d takes the last.
    expect(typeof slots.acquire('d')).toBe('function');
    expect(slots.acquire('e')).toBe('process');
  });

  it('answers 503 with Retry-After once the process holds its cap of streams, for any customer', async () => {
    const app = testApp(
      t.db,
      t.temporal,
      t.taskQueue,
      {},
      { sseMaxStreamsPerCustomer: 5, sseMaxStreamsPerProcess: 2 },
    );
    const [a, b] = await Promise.all([createCustomer(t.db), createCustomer(t.db)]);
    const first = await openStream(app, await customerToken(a.id));
    const second = await openStream(app, await customerToken(b.id));
    expect([first.res.status, second.res.status]).toEqual([200, 200]);
    const third = await openStream(app, await customerToken(a.id));
    expect(third.res.status).toBe(503);
    expect(Number(third.res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await third.res.json()).toMatchObject({ error: { code: 'stream_capacity_reached' } });
    await second.close();
    const again = await openStream(app, await customerToken(a.id));
    expect(again.res.status).toBe(200);
    for (const s of [first, again]) await s.close();
    expect(loadConfig({}).http.sseMaxStreamsPerProcess).toBe(1000);
    expect(() => loadConfig({ SSE_MAX_STREAMS_PER_PROCESS: '0' })).toThrow(
      /SSE_MAX_STREAMS_PER_PROCESS/,
    );
  });
});
