// Every recorded history under test/histories must replay against today's workflow code, so a
// change that would break running workflows fails here first (use patched() to evolve them).
// Every patch and every workflow branch has a recorded history: `npm run histories:record` keeps
// the histories of the named runs in the tests (see test/history-recorder.ts).
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-node';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { workerObservability } from '../src/observability/temporal-interceptors.js';
import { startTracing } from '../src/observability/tracing.js';
import { workflowBundleOptions } from '../src/temporal.js';
import { historyFiles, patchIdsIn, patchIdsInWorkflows, readHistory } from './history-files.js';

const files = historyFiles();

/** The branches each workflow can take, each with the history that proves it still replays. */
const branches = [
  'adjustment-completed',
  'adjustment-rejected',
  'checkout-credited',
  'checkout-credited-grant-expiry',
  'checkout-expired',
  'checkout-failed',
  'checkout-paid-before-wait',
  'checkout-async-paid',
  'checkout-async-failed',
  'checkout-expired-by-stripe',
  'checkout-expired-by-timer',
  'checkout-late-payment',
  'checkout-expiry-found-paid',
  'checkout-session-refused',
  'checkout-operator-cancel',
  'checkout-save-card',
  'auto-topup-succeeded',
  'auto-topup-capped',
  'auto-topup-declined',
  'auto-topup-requires-action',
  'dispute-won',
  'dispute-lost',
  'dispute-closed-first',
  'dispute-already-closed',
  'order-completed',
  'order-completed-notified',
  'order-insufficient',
  'order-partially-completed',
  'order-refund',
  'order-nothing-sold-after-debit',
  'order-operator-cancel',
  'refund-stripe-taken-back',
  'verification-cancelled',
  'verification-completed',
  'verification-insufficient',
  'verification-provider-failed',
  'verification-timeout',
  'verification-operator-cancel',
  'verification-rent-answer-lost',
  'refund-topup-refunded',
  'refund-topup-rejected',
  'refund-topup-failed',
  'refund-purchase-refunded',
  'refund-purchase-rejected',
];

describe('replay of recorded histories', () => {
  it('has a history for every workflow branch', () => {
    const missing = branches.filter((name) => !files.includes(`${name}.json`));
    expect(missing, 'record them with `npm run histories:record`').toEqual([]);
  });

  it('has a history that took every patch in src/workflows', () => {
    const patches = patchIdsInWorkflows();
    expect(patches.length).toBeGreaterThan(0);
    const recorded = new Set(files.flatMap((file) => patchIdsIn(readHistory(file))));
    const missing = patches.filter(({ id }) => !recorded.has(id));
    expect(
      missing,
      'a run that takes each of these patches must be kept by a test (keepHistory) and recorded ' +
        'with `npm run histories:record`',
    ).toEqual([]);
  });

  it.each(files)('%s replays without nondeterminism', async (file) => {
    const { workflowId, history } = readHistory(file);
    await expect(
      Worker.runReplayHistory(
        {
          workflowBundle: { codePath: inject('workflowBundlePath') },
          sinks: workerObservability().sinks,
        },
        temporal.api.history.v1.History.fromObject(history),
        workflowId,
      ),
    ).resolves.toBeUndefined();
  });
});

// Tracing adds OpenTelemetry's workflow interceptors to the bundle: the same histories replay.
describe('replay of recorded histories with tracing on', () => {
  let code: string;
  const tracing = startTracing({
    serviceName: 'replay-test',
    exporter: new InMemorySpanExporter(),
  });

  beforeAll(async () => {
    // The same options as the build's tracing prebundle and a tracing worker bundling at start.
    ({ code } = await bundleWorkflowCode(
      workflowBundleOptions(
        {
          log: () => undefined,
          trace: () => undefined,
          debug: () => undefined,
          info: () => undefined,
          warn: () => undefined,
          error: () => undefined,
        },
        { tracing: true },
      ),
    ));
  });

  it.each(files)('%s replays without nondeterminism', async (file) => {
    const { workflowId, history } = readHistory(file);
    await expect(
      Worker.runReplayHistory(
        { workflowBundle: { code }, sinks: workerObservability({ tracing }).sinks },
        temporal.api.history.v1.History.fromObject(history),
        workflowId,
      ),
    ).resolves.toBeUndefined();
  });
});
