// Which thresholds a balance arms, and what the customer is told on a crossing.
import { describe, expect, it } from 'vitest';
import { lowBalance } from '../notifications/messages.js';
import { armedFor } from './low-balance.js';

describe('armedFor', () => {
  it('arms the thresholds the balance is at or above', () => {
    expect(armedFor([100, 50, 20], 50n)).toEqual([50, 20]);
    expect(armedFor([100, 50, 20], 19n)).toEqual([]);
    expect(armedFor([100, 50, 20], 100n)).toEqual([100, 50, 20]);
    expect(armedFor([], 0n)).toEqual([]);
  });
});

describe('the low_balance message', () => {
  it('names the lowest threshold crossed, keyed by the crossing', () => {
    const customerId = '7f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f';
    expect(lowBalance({ customerId, crossing: 3, crossed: [20, 50], available: 15n })).toEqual({
      idempotencyKey: `low-balance:${customerId}:3`,
      customerId,
      kind: 'low_balance',
      title: 'Low balance',
      body: 'You have 15 credits left to spend, below your alert at 20 credits.',
      data: { threshold: 20, thresholds: [50, 20], available: 15, crossing: 3 },
    });
  });

  it('keeps an available balance beyond 2^53 exact, as a decimal string', () => {
    const message = lowBalance({
      customerId: 'c',
      crossing: 1,
      crossed: [10],
      available: 2n ** 60n,
    });
    expect(message.data?.['available']).toBe('1152921504606846976');
    expect(JSON.parse(JSON.stringify(message.data))).toEqual(message.data);
  });
});
