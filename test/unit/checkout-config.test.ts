// Checkout configuration: the default packs, CREDIT_PACKS overrides, and errors naming the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { packExpiry } from '../../src/payments/packs.js';

describe('checkout configuration', () => {
  it("defaults to the issue's packs and a 30-minute expiry", () => {
    const { checkout } = loadConfig({});
    expect(checkout.packs).toEqual({
      small: { credits: 100, amount: 500, currency: 'eur' },
      medium: { credits: 550, amount: 2500, currency: 'eur' },
      large: { credits: 1200, amount: 5000, currency: 'eur' },
    });
    expect(checkout.expirySeconds).toBe(1800);
  });

  it('takes packs from CREDIT_PACKS', () => {
    const { checkout } = loadConfig({
      CREDIT_PACKS: '{"mini":{"credits":10,"amount":99,"currency":"USD"}}',
      CHECKOUT_EXPIRY_MINUTES: '60',
    });
    expect(checkout.packs).toEqual({ mini: { credits: 10, amount: 99, currency: 'usd' } });
    expect(checkout.expirySeconds).toBe(3600);
  });

  it.each([
    ['not JSON', '{small'],
    ['a fractional amount', '{"small":{"credits":100,"amount":4.99,"currency":"eur"}}'],
    ['no packs', '{}'],
    ['a bad currency', '{"small":{"credits":100,"amount":500,"currency":"euro"}}'],
    [
      'an expiry of 0 days',
      '{"small":{"credits":100,"amount":500,"currency":"eur","expiresInDays":0}}',
    ],
    [
      'a fractional expiry',
      '{"small":{"credits":100,"amount":500,"currency":"eur","expiresInDays":1.5}}',
    ],
  ])('refuses CREDIT_PACKS with %s, naming the variable', (_label, value) => {
    expect(() => loadConfig({ CREDIT_PACKS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ CREDIT_PACKS: value })).toThrow(/CREDIT_PACKS/);
  });

  it("takes a pack's expiresInDays, which dates its credits from the moment they are credited", () => {
    const { checkout } = loadConfig({
      CREDIT_PACKS: '{"monthly":{"credits":100,"amount":500,"currency":"eur","expiresInDays":30}}',
    });
    expect(checkout.packs).toEqual({
      monthly: { credits: 100, amount: 500, currency: 'eur', expiresInDays: 30 },
    });
    const creditedAt = new Date('2026-01-31T12:00:00Z');
    expect(packExpiry(checkout.packs['monthly'], creditedAt)?.toISOString()).toBe(
      '2026-03-02T12:00:00.000Z',
    );
    expect(packExpiry({ credits: 1, amount: 1, currency: 'eur' }, creditedAt)).toBeNull();
    expect(packExpiry(undefined, creditedAt)).toBeNull();
  });

  it('refuses an expiry Stripe would refuse', () => {
    expect(() => loadConfig({ CHECKOUT_EXPIRY_MINUTES: '5' })).toThrow(/CHECKOUT_EXPIRY_MINUTES/);
  });
});
