// Data the database refuses for good ends the step at once: the workflow compensates or fails,
// it never retries forever with credits held (the API refuses such input too; this is the
// second line, driving the workflows directly).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workflowIds, type AdjustmentInput } from '../src/shared.js';
import { expectLedgerConsistent } from './helpers.js';
import { workflowBench, type WorkflowBench } from './workflow-bench.js';

let b: WorkflowBench;

beforeAll(async () => {
  b = await workflowBench('permanent-data');
});

afterAll(async () => {
  await expectLedgerConsistent(b.db);
  await b.close();
});

describe('permanent database errors', () => {
  it('an adjustment whose reason holds a NUL byte fails at once and posts nothing', async () => {
    const customer = await b.customerWith(100);
    const input: AdjustmentInput = {
      adjustmentId: randomUUID(),
      customerId: customer.id,
      amount: 25,
      reason: 'goodwill \u0000 credit',
      requestedBy: 'admin-tests',
    };
    const handle = await b.temporal.workflow.start('adjustment', {
      taskQueue: b.taskQueue,
      workflowId: workflowIds.adjustment(input.adjustmentId),
      args: [input],
    });
    const run = await b.settled(handle);
    expect(run.ok).toBe(false);
    const cause = run.ok
      ? undefined
      : ((run.error as Error).cause as { cause?: { type?: string } });
    // The ledger refuses the data itself, before the activity wrapper would.
    expect(cause?.cause?.type).toBe('invalid_data');
    expect(await b.entryTypes(handle.workflowId)).toEqual([]);
    expect(await b.ledger.walletBalance(customer.id)).toBe(100);
  }, 60_000);
});
