// Checkout configuration: the default packs, CREDIT_PACKS overrides, and errors naming the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

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
  ])('refuses CREDIT_PACKS with %s, naming the variable', (_label, value) => {
    expect(() => loadConfig({ CREDIT_PACKS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ CREDIT_PACKS: value })).toThrow(/CREDIT_PACKS/);
  });

  it('refuses an expiry Stripe would refuse', () => {
    expect(() => loadConfig({ CHECKOUT_EXPIRY_MINUTES: '5' })).toThrow(/CHECKOUT_EXPIRY_MINUTES/);
  });
});
