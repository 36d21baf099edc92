// transitionPayment against PostgreSQL: allowed moves apply, repeats are no-ops, illegal ones are
// refused, logged and not applied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { transitionPayment } from '../src/payments/state-machine.js';
import { createCustomer, expectLedgerConsistent, testDatabase, uniqueId } from './helpers.js';

let db: Database;

beforeAll(() => {
  db = testDatabase();
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await db.close();
});

async function payment(status = 'init') {
  const customer = await createCustomer(db);
  const id = uniqueId('pay');
  await db.sql`
    insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
    values (${id}, ${`checkout-${id}`}, ${customer.id}, 'small', 100, 500, 'eur', ${status})`;
  return id;
}

const statusOf = async (id: string) =>
  (await db.sql<{ status: string }[]>`select status from payments where id = ${id}`)[0]?.status;

describe('transitionPayment', () => {
  it('applies an allowed move and records the payment intent once', async () => {
    const warnings: unknown[] = [];
    const log = { warn: (...args: unknown[]) => void warnings.push(args) };
    const id = await payment();
    expect(
      await transitionPayment(db.sql, { paymentId: id, to: 'paid', paymentIntentId: 'pi_a' }, log),
    ).toEqual({
      outcome: 'applied',
      from: 'init',
      to: 'paid',
    });
    expect(
      await transitionPayment(db.sql, { paymentId: id, to: 'paid', paymentIntentId: 'pi_b' }, log),
    ).toMatchObject({
      outcome: 'unchanged',
    });
    const [row] = await db.sql`select payment_intent_id from payments where id = ${id}`;
    expect(row).toEqual({ payment_intent_id: 'pi_a' });
    expect(warnings).toEqual([]);
  });

  it('refuses and logs an illegal move, and changes nothing', async () => {
    const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
    const log = {
      warn: (message: string, fields?: Record<string, unknown>) =>
        void warnings.push([message, fields]),
    };
    // (A credited row without its topup entry would itself break the ledger invariant.)
    const id = await payment('expired');
    expect(
      await transitionPayment(db.sql, { paymentId: id, to: 'failed', cause: 'evt_1' }, log),
    ).toEqual({
      outcome: 'refused',
      from: 'expired',
      to: 'failed',
    });
    expect(
      await transitionPayment(db.sql, { paymentId: id, to: 'credited', cause: 'evt_2' }, log),
    ).toMatchObject({
      outcome: 'refused',
    });
    expect(await statusOf(id)).toBe('expired');
    expect(warnings).toEqual([
      [
        'payment transition refused',
        { paymentId: id, from: 'expired', to: 'failed', cause: 'evt_1' },
      ],
      [
        'payment transition refused',
        { paymentId: id, from: 'expired', to: 'credited', cause: 'evt_2' },
      ],
    ]);
    expect(
      await transitionPayment(db.sql, { paymentId: 'pay_missing', to: 'paid' }, log),
    ).toMatchObject({
      outcome: 'not_found',
    });
  });

  it('settles a payment racing its expiry as paid, whichever side moves first', async () => {
    const log = { warn: () => undefined };
    const seen = { expiredFirst: 0, paidFirst: 0 };
    for (let round = 0; round < 40; round++) {
      const id = await payment();
      const movers = (to: 'paid' | 'expired') =>
        Array.from(
          { length: 5 },
          () => () => transitionPayment(db.sql, { paymentId: id, to }, log),
        );
      // Each round lets the other side leave first.
      const order =
        round % 2 === 0
          ? [...movers('paid'), ...movers('expired')]
          : [...movers('expired'), ...movers('paid')];
      const results = await Promise.all(order.map((move) => move()));
      const applied = results.filter((r) => r.outcome === 'applied');
      // The payment is never lost to the expiry: it ends paid, moved there exactly once.
      expect(await statusOf(id)).toBe('paid');
      expect(applied.filter((r) => r.to === 'paid')).toHaveLength(1);
      if (applied.some((r) => r.to === 'expired')) {
        // The expiry came first (once), and the payment then moved it on, as a late payment.
        expect(applied).toEqual(
          expect.arrayContaining([
            { outcome: 'applied', from: 'init', to: 'expired' },
            { outcome: 'applied', from: 'expired', to: 'paid' },
          ]),
        );
        expect(applied).toHaveLength(2);
        seen.expiredFirst++;
      } else {
        expect(applied).toEqual([{ outcome: 'applied', from: 'init', to: 'paid' }]);
        seen.paidFirst++;
      }
      // Everyone else found the race already decided.
      for (const r of results.filter((r) => r.outcome !== 'applied')) {
        expect(['unchanged', 'refused']).toContain(r.outcome);
      }
      if (round >= 9 && seen.expiredFirst > 0 && seen.paidFirst > 0) break;
    }
    expect(seen.expiredFirst).toBeGreaterThan(0);
    expect(seen.paidFirst).toBeGreaterThan(0);
  });
});
