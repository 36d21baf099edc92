// The payment state machine's table: what may follow what.
import { describe, expect, it } from 'vitest';
import {
  PAYMENT_STATUSES,
  allowedFrom,
  canTransition,
  type PaymentStatus,
} from '../../src/payments/state-machine.js';

describe('payment state machine', () => {
  it.each<[PaymentStatus, PaymentStatus]>([
    ['init', 'paid'],
    ['paid', 'credited'],
    ['credited', 'refunded'],
    ['credited', 'chargeback'],
    ['credited', 'partially_refunded'],
    ['partially_refunded', 'refunded'],
    ['credited', 'disputed'],
    ['disputed', 'chargeback'],
    ['init', 'expired'],
    ['init', 'failed'],
    ['expired', 'paid'],
    ['failed', 'paid'],
  ])('allows %s → %s', (from, to) => {
    expect(canTransition(from, to)).toBe(true);
  });

  it.each<[PaymentStatus, PaymentStatus]>([
    ['init', 'credited'],
    ['credited', 'paid'],
    ['credited', 'expired'],
    ['paid', 'expired'],
    ['paid', 'failed'],
    ['expired', 'credited'],
    ['refunded', 'credited'],
    ['disputed', 'credited'],
    ['partially_refunded', 'credited'],
    ['chargeback', 'paid'],
  ])('refuses %s → %s', (from, to) => {
    expect(canTransition(from, to)).toBe(false);
  });

  it('never allows a state to follow itself, and only a paid payment can be credited', () => {
    for (const status of PAYMENT_STATUSES) expect(canTransition(status, status)).toBe(false);
    expect(allowedFrom('credited')).toEqual(['paid']);
    expect(allowedFrom('paid')).toEqual(['init', 'expired', 'failed']);
  });
});
