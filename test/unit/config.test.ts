// Config parsing: defaults, and errors that name the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

/** What `openssl rand -base64 48` prints. */
const STRONG_SECRET = 'q3J9vR0mWc1tLx8ZpE4yKdN6sHf2UaG7bQoV5iTzXjYwMkCr+/nPlDeSgAhOuI0FB';

/** The ConfigError loadConfig throws for `env`, or a failure when it throws none. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  return expect.unreachable('loadConfig accepted it');
}

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
      AUTH_JWT_SECRET: STRONG_SECRET,
      STRIPE_SECRET_KEY: 'sk_test_abc',
      STRIPE_API_BASE: 'http://stripe-mock:12111',
    });
    expect(config.port).toBe(8080);
    expect(config.stripe.apiBase).toBe('http://stripe-mock:12111');
  });

  describe('NODE_ENV=production and the JWT secret', () => {
    it.each([
      ['the docker-compose placeholder', 'change-me-in-production-32-chars-min'],
      ['a placeholder of any length', 'please-changeme-before-going-live-0123456789'],
      ['one character repeated', 'x'.repeat(64)],
      ['too few distinct characters', 'abcabcabcabcabcabcabcabcabcabcabcabc'],
    ])('refuses %s, naming AUTH_JWT_SECRET', (_, secret) => {
      const err = configError({ NODE_ENV: 'production', AUTH_JWT_SECRET: secret });
      expect(err.problems).toHaveLength(1);
      expect(err.problems[0]).toMatch(/^AUTH_JWT_SECRET: .*NODE_ENV=production/);
      expect(err.message).not.toContain(secret);
    });

    it('refuses a secret under 32 characters', () => {
      const err = configError({
        NODE_ENV: 'production',
        AUTH_JWT_SECRET: STRONG_SECRET.slice(0, 31),
      });
      expect(err.problems.join('\n')).toContain('AUTH_JWT_SECRET');
    });

    it('lets development keep the placeholder, and production a random secret', () => {
      const placeholder = 'change-me-in-production-32-chars-min';
      expect(loadConfig({ AUTH_JWT_SECRET: placeholder }).auth.jwtSecret).toBe(placeholder);
      expect(
        loadConfig({ NODE_ENV: 'production', AUTH_JWT_SECRET: STRONG_SECRET }).auth.jwtSecret,
      ).toBe(STRONG_SECRET);
    });
  });

  it('reads the worker deployment settings', () => {
    expect(loadConfig({}).workerBuild).toEqual({
      buildId: undefined,
      deploymentName: 'creditflow',
      versioning: false,
      workflowBundlePath: undefined,
    });
    expect(
      loadConfig({
        WORKER_BUILD_ID: '1.4.0+abc123',
        WORKER_VERSIONING: 'true',
        WORKER_VERSIONING_BEHAVIOR: 'auto-upgrade',
      }).workerBuild,
    ).toMatchObject({ buildId: '1.4.0+abc123', versioning: 'auto-upgrade' });
    expect(loadConfig({ WORKER_VERSIONING: 'true' }).workerBuild.versioning).toBe('pinned');
    expect(configError({ WORKER_BUILD_ID: 'has spaces' }).message).toContain('WORKER_BUILD_ID');
  });
});
