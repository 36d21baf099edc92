// Config parsing: defaults, and errors that name the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('loadConfig', () => {
  it('applies defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.port).toBe(3000);
    expect(config.temporal).toMatchObject({
      namespace: 'default',
      taskQueue: 'creditflow',
      address: undefined,
    });
    expect(config.databaseUrl).toBeUndefined();
  });

  it('names every bad variable', () => {
    try {
      loadConfig({
        PORT: 'eighty',
        DATABASE_URL: 'mysql://x',
        AUTH_JWT_SECRET: 'short',
        TEMPORAL_ADDRESS: 'http://x',
      });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const message = (err as Error).message;
      for (const name of ['PORT', 'DATABASE_URL', 'AUTH_JWT_SECRET', 'TEMPORAL_ADDRESS']) {
        expect(message).toContain(name);
      }
    }
  });

  it('accepts a complete production configuration', () => {
    const config = loadConfig({
      NODE_ENV: 'production',
      PORT: '8080',
      DATABASE_URL: 'postgres://u:p@db:5432/creditflow',
      TEMPORAL_ADDRESS: 'temporal:7233',
      AUTH_JWT_SECRET: 'x'.repeat(32),
      STRIPE_SECRET_KEY: 'sk_test_abc',
      STRIPE_API_BASE: 'http://stripe-mock:12111',
    });
    expect(config.port).toBe(8080);
    expect(config.stripe.apiBase).toBe('http://stripe-mock:12111');
  });
});
