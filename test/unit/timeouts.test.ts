// Client timeouts fit inside the activities that wrap them, and the worker's statement timeout
// ends a stuck statement before its attempt times out.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import {
  STRIPE_MAX_NETWORK_RETRIES,
  STRIPE_MAX_RETRY_DELAY_MS,
  STRIPE_REQUEST_TIMEOUT_MS,
  createStripeClient,
} from '../../src/stripe/gateway.js';
import {
  DB_STEP_START_TO_CLOSE_MS,
  STRIPE_STEP_START_TO_CLOSE_MS,
} from '../../src/workflows/timeouts.js';

describe('Stripe client', () => {
  it('its timeout and retries fit inside the checkout activity start-to-close', () => {
    const client = createStripeClient('sk_test_x', 'http://127.0.0.1:12111');
    const timeout = client.getApiField('timeout');
    const retries = client.getMaxNetworkRetries();
    expect(timeout).toBe(STRIPE_REQUEST_TIMEOUT_MS);
    expect(retries).toBe(STRIPE_MAX_NETWORK_RETRIES);
    expect(
      (client.getConstant('MAX_NETWORK_RETRY_DELAY_SEC') as number) * 1000,
    ).toBeLessThanOrEqual(STRIPE_MAX_RETRY_DELAY_MS);
    const worstCase = (retries + 1) * timeout + retries * STRIPE_MAX_RETRY_DELAY_MS;
    expect(worstCase).toBeLessThan(STRIPE_STEP_START_TO_CLOSE_MS);
  });
});

describe('worker statement timeout', () => {
  it('defaults below the database steps start-to-close', () => {
    expect(loadConfig({}).workerStatementTimeoutMs).toBeLessThan(DB_STEP_START_TO_CLOSE_MS);
  });

  it('refuses a value that would outlive the activity', () => {
    expect(() => loadConfig({ WORKER_STATEMENT_TIMEOUT_MS: '10000' })).toThrow(
      /WORKER_STATEMENT_TIMEOUT_MS/,
    );
    expect(loadConfig({ WORKER_STATEMENT_TIMEOUT_MS: '5000' }).workerStatementTimeoutMs).toBe(5000);
  });
});
