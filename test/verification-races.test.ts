// Races that must still end in exactly one outcome: a code against the timer, a cancel against a code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCustomer, expectLedgerConsistent, fund } from './helpers.js';
import { verificationHarness, type VerificationHarness } from './verification-harness.js';

let h: VerificationHarness;

beforeAll(async () => {
  h = await verificationHarness('race');
});

afterAll(async () => {
  await expectLedgerConsistent(h.db);
  await h.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `count` tasks, `width` at a time. */
async function inBatches<T>(
  count: number,
  width: number,
  task: (i: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = [];
  for (let start = 0; start < count; start += width) {
    results.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(width, count - start) }, (_, j) => task(start + j)),
      )),
    );
  }
  return results;
}

/** Exactly one outcome, and the money agrees with it. */
async function expectOneOutcome(customerId: string, id: string) {
  const final = await h.waitFor(customerId, id, ['completed', 'refunded'], 30_000);
  const types = await h.entryTypes(id);
  const balance = await h.ledger.walletBalance(customerId);
  if (final.status === 'completed') {
    expect(types).toEqual(['verification_purchase']);
    expect(final.refundReason).toBeUndefined();
    expect(balance).toBe(50);
  } else {
    expect(types).toEqual(['verification_purchase', 'verification_refund']);
    expect(final.code).toBeUndefined();
    expect(balance).toBe(100);
  }
  return final.status;
}

describe('races', () => {
  it('code against timeout, 50 times: each ends completed or refunded, never both', async () => {
    const outcomes = await inBatches(50, 10, async (i) => {
      const customer = await createCustomer(h.db);
      await fund(h.ledger, customer.id, 100);
      const res = await h.buy(customer.id, { timeoutSeconds: 1 });
      const { id } = (await res.json()) as { id: string };
      await h.waitFor(customer.id, id, ['active', 'refunded']);
      // Aim at the moment the one-second timer fires, a little before and after.
      await sleep(850 + (i % 10) * 30);
      await h.deliverCode(id, String(100000 + i));
      return expectOneOutcome(customer.id, id);
    });
    expect(outcomes).toHaveLength(50);
  });

  it('cancel against code, 50 times: the first wins, the other is refused or ignored', async () => {
    const outcomes = await inBatches(50, 10, async (i) => {
      const customer = await createCustomer(h.db);
      await fund(h.ledger, customer.id, 100);
      const res = await h.buy(customer.id, { timeoutSeconds: 120 });
      const { id } = (await res.json()) as { id: string };
      await h.waitFor(customer.id, id, ['active']);
      // Even rounds race the two; odd rounds send the code first, so the cancel must be refused.
      const [cancel, code] =
        i % 2 === 0
          ? await Promise.all([h.cancel(customer.id, id), h.deliverCode(id, '222222')])
          : await h
              .deliverCode(id, '222222')
              .then(async (c) => [await h.cancel(customer.id, id), c] as const);
      expect([200, 409]).toContain(cancel.status);
      expect(code.status).toBe(200);
      const status = await expectOneOutcome(customer.id, id);
      expect(cancel.status).toBe(status === 'refunded' ? 200 : 409);
      return status;
    });
    expect(outcomes).toHaveLength(50);
    expect(outcomes).toContain('completed');
  });
});
