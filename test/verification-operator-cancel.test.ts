// An operator cancels a verification from Temporal while its debit is still in flight: the debit
// commits, the activity answers late, and the refund must still find and reverse it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../src/activities/index.js';
import type { VerificationInput } from '../src/shared.js';
import { createCustomer, eventually, expectLedgerConsistent, fund } from './helpers.js';
import { verificationHarness, type VerificationHarness } from './verification-harness.js';

let h: VerificationHarness;
let real: ReturnType<typeof createActivities>;
let debitCommitted: () => void = () => undefined;

beforeAll(async () => {
  h = await verificationHarness('op-cancel', {
    overrides: {
      // Commits, then takes its time answering: the window in which the cancel lands.
      debitVerification: async (input: VerificationInput & { workflowId: string }) => {
        const result = await real.debitVerification(input);
        debitCommitted();
        await new Promise((r) => setTimeout(r, 1500));
        return result;
      },
    },
  });
  real = createActivities({ db: h.db });
});

afterAll(async () => {
  await expectLedgerConsistent(h.db);
  await h.close();
});

describe('operator cancel during the debit', () => {
  it('refunds the debit that committed while the cancel was pending', async () => {
    const customer = await createCustomer(h.db);
    await fund(h.ledger, customer.id, 100);
    const committed = new Promise<void>((resolve) => (debitCommitted = resolve));
    const buying = h.buy(customer.id, { timeoutSeconds: 120 });
    await committed;
    const [row] = await h.db.sql<{ workflow_id: string; id: string }[]>`
      select workflow_id, id from verifications where customer_id = ${customer.id}`;
    await h.temporal.workflow.getHandle(row!.workflow_id).cancel();
    await buying;

    await eventually(async () => {
      const types = await h.entryTypes(row!.id);
      return types.length === 2 ? types : undefined;
    });
    expect(await h.entryTypes(row!.id)).toEqual(['verification_purchase', 'verification_refund']);
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    const final = await h.waitFor(customer.id, row!.id, ['refunded']);
    expect(final.refundReason).toBe('cancelled');
    expect([...h.sms.rentals.values()].filter((r) => r.verificationId === row!.id)).toEqual([]);
  });
});
