// The money of a partial top-up refund: pro rata, rounded down, the last part gets what is left.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { refundAmount, topupRefundRefusal } from '../../src/activities/refunds/topup.js';

const medium = { credits: 550, amount: 2500, refundedCredits: 0, refundedAmount: 0 };

describe('refundAmount', () => {
  it('rounds a part down and gives the last part exactly what is left', () => {
    expect(refundAmount(medium, 100)).toBe(454); // 454.54…
    const after = { ...medium, refundedCredits: 200, refundedAmount: 908 };
    expect(refundAmount(after, 350)).toBe(1592); // not floor(1590.9)
    expect(refundAmount(medium, 550)).toBe(2500);
  });

  it('whatever the parts, they add up to the amount paid and each is at most its share rounded up', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 1, maxLength: 20 }),
        (credits, amount, asks) => {
          const payment = { credits, amount, refundedCredits: 0, refundedAmount: 0 };
          for (const ask of asks) {
            const left = credits - payment.refundedCredits;
            if (left === 0) break;
            const part = Math.min(ask, left);
            const money = refundAmount(payment, part);
            expect(money).toBeGreaterThanOrEqual(0);
            if (part < left) expect(money).toBe(Math.floor((part * amount) / credits));
            payment.refundedCredits += part;
            payment.refundedAmount += money;
            expect(payment.refundedAmount).toBeLessThanOrEqual(amount);
          }
          const rest = credits - payment.refundedCredits;
          if (rest > 0) payment.refundedAmount += refundAmount(payment, rest);
          expect(payment.refundedAmount).toBe(amount);
        },
      ),
    );
  });

  it('refuses a part worth less than one minor unit, but never the last credits', () => {
    const cheap = {
      id: 'pay_x',
      customerId: 'c',
      credits: 1000,
      amount: 500,
      currency: 'eur',
      status: 'credited',
      paymentIntentId: 'pi_x',
      refundedCredits: 0,
      refundedAmount: 0,
      createdAt: new Date(),
    };
    expect(topupRefundRefusal(cheap, 'c', 1)?.code).toBe('refund_too_small');
    expect(topupRefundRefusal(cheap, 'c', 2)).toBeUndefined();
    const almostDone = { ...cheap, refundedCredits: 999, refundedAmount: 499 };
    expect(topupRefundRefusal(almostDone, 'c', 1)).toBeUndefined();
    expect(topupRefundRefusal(almostDone, 'c', 2)?.code).toBe('refund_exceeds_payment');
    expect(topupRefundRefusal(cheap, 'someone else', 2)?.code).toBe('payment_not_found');
    expect(topupRefundRefusal({ ...cheap, status: 'disputed' }, 'c', 2)?.code).toBe(
      'refund_not_allowed',
    );
  });
});
