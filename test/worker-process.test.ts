// The worker as a separate process survives a SIGKILL: a new one finishes what the old one started.
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import { workflowIds, type AdjustmentState } from '../src/shared.js';
import type { adjustment } from '../src/workflows/adjustment.js';
import {
  connectTestClient,
  createCustomer,
  expectLedgerConsistent,
  spawnWorkerProcess,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let temporal: Client;

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await temporal.connection.close();
  await db.close();
});

describe('worker process', () => {
  it('finishes an adjustment started while no worker ran, after the first worker was killed', async () => {
    const taskQueue = uniqueId('chaos-adjust');
    const first = await spawnWorkerProcess(taskQueue);
    await first.kill();

    const customer = await createCustomer(db);
    const id = uniqueId('adj');
    const handle = await temporal.workflow.start<typeof adjustment>('adjustment', {
      taskQueue,
      workflowId: workflowIds.adjustment(id),
      args: [
        {
          adjustmentId: id,
          customerId: customer.id,
          amount: 25,
          reason: 'chaos',
          requestedBy: 'test',
        },
      ],
    });
    const second = await spawnWorkerProcess(taskQueue);
    try {
      const result: AdjustmentState = await handle.result();
      expect(result.status).toBe('completed');
      expect(await createLedger(db.sql).walletBalance(customer.id)).toBe(25);
    } finally {
      await second.stop();
    }
  });
});
