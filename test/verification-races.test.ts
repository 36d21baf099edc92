// Races that must still end in exactly one outcome: a code against the timer, a cancel against a
// code. Each race is aimed at the moment the two sides meet, and the tests run rounds until both
// sides have won at least once (bounded), so a race that is never really contested fails.
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

type Outcome = 'completed' | 'refunded';

/**
 * Runs rounds of `width` concurrent races until at least `minimum` ran and both outcomes were
 * seen, or `maxRounds` ran. `aim` moves the next round's aim towards the side that has not won
 * yet, so the races stay contested on a slow or a fast machine.
 */
async function raceUntilBothWin(options: {
  minimum: number;
  width: number;
  maxRounds: number;
  race: (i: number, round: number) => Promise<Outcome>;
  aim?: (missing: Outcome) => void;
}): Promise<Record<Outcome, number>> {
  const seen: Record<Outcome, number> = { completed: 0, refunded: 0 };
  for (let round = 0; round < options.maxRounds; round++) {
    const outcomes = await Promise.all(
      Array.from({ length: options.width }, (_, i) => options.race(i, round)),
    );
    for (const outcome of outcomes) seen[outcome]++;
    const ran = (round + 1) * options.width;
    if (ran >= options.minimum && seen.completed > 0 && seen.refunded > 0) break;
    if (seen.completed === 0) options.aim?.('completed');
    else if (seen.refunded === 0) options.aim?.('refunded');
  }
  return seen;
}

/**
 * An aim that walks towards the side that has not won yet, doubling its step while that side keeps
 * losing: on a loaded machine one side can be hundreds of milliseconds slower than on an idle one,
 * and a fixed step would not reach the meeting point within the bounded rounds.
 */
function walkingAim(start: number, step: number, towards: Record<Outcome, 1 | -1>) {
  let value = start;
  let last: Outcome | undefined;
  let current = step;
  return {
    get value() {
      return value;
    },
    move(missing: Outcome) {
      current = missing === last ? current * 2 : step;
      last = missing;
      value += towards[missing] * current;
    },
  };
}

/** Exactly one outcome, and the money agrees with it. */
async function expectOneOutcome(customerId: string, id: string): Promise<Outcome> {
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
  return final.status as Outcome;
}

async function activeVerification(timeoutSeconds: number) {
  const customer = await createCustomer(h.db);
  await fund(h.ledger, customer.id, 100);
  const res = await h.buy(customer.id, { timeoutSeconds });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  await h.waitFor(customer.id, id, ['active']);
  return { customerId: customer.id, id };
}

/** The SMS webhook took the code: delivered to the workflow, or to one that had already closed. */
async function expectCodeAccepted(res: Response) {
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ delivered: expect.any(Boolean) as boolean });
}

describe('races', () => {
  it('code against timeout: both win sometimes, each race ends completed or refunded, never both', async () => {
    // Aimed at the moment the one-second timer fires, spread a little before and after it.
    const aim = walkingAim(950, 100, { refunded: 1, completed: -1 });
    const seen = await raceUntilBothWin({
      minimum: 50,
      width: 10,
      maxRounds: 12,
      aim: (missing) => aim.move(missing),
      race: async (i) => {
        const { customerId, id } = await activeVerification(1);
        await sleep(Math.max(0, aim.value - 120 + i * 25));
        await expectCodeAccepted(await h.deliverCode(id, String(100000 + i)));
        return expectOneOutcome(customerId, id);
      },
    });
    expect(seen.completed).toBeGreaterThan(0);
    expect(seen.refunded).toBeGreaterThan(0);
  }, 150_000);

  it('cancel against code: both win sometimes; the loser is refused (409) or ignored', async () => {
    // How much earlier the cancel leaves than the code (negative: later).
    const lead = walkingAim(0, 5, { refunded: 1, completed: -1 });
    const seen = await raceUntilBothWin({
      minimum: 30,
      width: 10,
      maxRounds: 12,
      aim: (missing) => lead.move(missing),
      race: async (i) => {
        const { customerId, id } = await activeVerification(120);
        // Spread the round around the aim so that one round can see both sides win.
        const skew = lead.value + (i - 4.5) * Math.max(1, Math.abs(lead.value) / 8);
        const [cancel, code] = await Promise.all([
          sleep(Math.max(0, -skew)).then(() => h.cancel(customerId, id)),
          sleep(Math.max(0, skew)).then(() => h.deliverCode(id, '222222')),
        ]);
        await expectCodeAccepted(code);
        const status = await expectOneOutcome(customerId, id);
        expect(cancel.status).toBe(status === 'refunded' ? 200 : 409);
        if (cancel.status === 409) {
          expect(await cancel.json()).toMatchObject({ error: { code: 'verification_closed' } });
        } else {
          expect(await cancel.json()).toMatchObject({ status: 'refunded' });
        }
        return status;
      },
    });
    expect(seen.completed).toBeGreaterThan(0);
    expect(seen.refunded).toBeGreaterThan(0);
  }, 150_000);

  it('a code that arrived first wins: the cancel after it is refused', async () => {
    const results = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const { customerId, id } = await activeVerification(120);
        await expectCodeAccepted(await h.deliverCode(id, '333333'));
        const cancel = await h.cancel(customerId, id);
        expect(cancel.status).toBe(409);
        expect(await cancel.json()).toMatchObject({ error: { code: 'verification_closed' } });
        return expectOneOutcome(customerId, id);
      }),
    );
    expect(results).toEqual(Array(5).fill('completed'));
  });
});
