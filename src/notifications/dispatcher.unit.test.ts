// The dispatcher's backoff and its configuration.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../config.js';
import { retryDelayMs, type OutboxSettings } from './dispatcher.js';

const settings: OutboxSettings = {
  pollIntervalMs: 1000,
  batchSize: 50,
  retryInitialMs: 1000,
  retryMaxMs: 60_000,
  alertAfterAttempts: 5,
  maxAttempts: 50,
};

describe('outbox retries', () => {
  it('doubles the delay after each failed attempt, up to the maximum', () => {
    expect([1, 2, 3, 4, 6, 7, 8, 1000].map((n) => retryDelayMs(settings, n))).toEqual([
      1000, 2000, 4000, 8000, 32_000, 60_000, 60_000, 60_000,
    ]);
  });

  it('reads its settings from OUTBOX_* variables, with defaults', () => {
    expect(loadConfig({}).outbox).toEqual({
      pollIntervalMs: 1000,
      batchSize: 50,
      retryInitialMs: 1000,
      retryMaxMs: 300_000,
      alertAfterAttempts: 5,
      maxAttempts: 50,
    });
    expect(
      loadConfig({
        OUTBOX_POLL_INTERVAL_MS: '200',
        OUTBOX_ALERT_AFTER_ATTEMPTS: '3',
        OUTBOX_MAX_ATTEMPTS: '10',
      }).outbox,
    ).toMatchObject({ pollIntervalMs: 200, alertAfterAttempts: 3, maxAttempts: 10 });
    expect(() => loadConfig({ OUTBOX_ALERT_AFTER_ATTEMPTS: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({ OUTBOX_POLL_INTERVAL_MS: 'often' })).toThrow(
      /OUTBOX_POLL_INTERVAL_MS/,
    );
  });
});
