// The sweep's canary: a real verification purchase on the canary customer that must time out and
// be refunded; one that fails raises an alert.
import { ApplicationFailure } from '@temporalio/activity';
import { describe, expect, it } from 'vitest';
import { CANARY_EXTERNAL_ID } from '../src/reconciliation/plan.js';
import { uniqueId } from './helpers.js';
import { startReconciliationBench } from './reconciliation-harness.js';

describe('reconciliation canary', () => {
  it('passes: the purchase was debited, timed out and refunded', async () => {
    const bench = await startReconciliationBench('reconciliation-canary');
    try {
      const scope = (await bench.customer()).id;
      const { runId, summary } = await bench.run({
        trigger: 'sweep',
        windowMinutes: 1,
        canaryCredits: 3,
        customerIds: [scope],
      });
      expect(summary.canary).toEqual({
        status: 'passed',
        detail: 'debited, timed out and refunded',
      });
      const [verification] = await bench.db.sql<
        { status: string; price: string; customer: string }[]
      >`
        select v.status, v.price, c.external_id as customer
        from verifications v join customers c on c.id = v.customer_id
        where v.id = ${`canary-${runId}`}`;
      expect(verification).toEqual({
        status: 'refunded',
        price: '3',
        customer: CANARY_EXTERNAL_ID,
      });
      const alerts = await bench.db.sql`select 1 from alerts where key like ${`canary_%:${runId}`}`;
      expect(alerts).toHaveLength(0);
    } finally {
      await bench.close();
    }
  });

  it('raises canary_failed when the purchase does not settle as it should', async () => {
    const bench = await startReconciliationBench('reconciliation-canary-failing', {
      wrap: () => ({
        debitVerification: () =>
          Promise.reject(ApplicationFailure.nonRetryable('refused by the test', 'invalid_posting')),
      }),
    });
    try {
      const runId = uniqueId('canary-fails');
      const { summary } = await bench.run({
        runId,
        trigger: 'sweep',
        windowMinutes: 1,
        canaryCredits: 1,
        customerIds: [(await bench.customer()).id],
      });
      expect(summary.canary?.status).toBe('failed');
      const alerts = await bench.db.sql<{ kind: string; severity: string }[]>`
        select kind, severity from alerts where key = ${`canary_failed:${runId}`}`;
      expect(alerts).toEqual([{ kind: 'canary_failed', severity: 'critical' }]);
    } finally {
      await bench.close();
    }
  });
});
