// A worker process writes only JSON lines: its own logs, the SDK's, the bundler's and the native runtime's.
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { workflowIds, type AdjustmentState } from '../src/shared.js';
import type { adjustment } from '../src/workflows/adjustment.js';
import {
  connectTestClient,
  createCustomer,
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
  await temporal.connection.close();
  await db.close();
});

/** Every non-empty line of the output, parsed; a line that is not one JSON object fails here. */
function jsonLines(output: string[]): Record<string, unknown>[] {
  return output
    .join('')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      expect(line, 'no ANSI colour codes').not.toContain('\u001b[');
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new Error(`worker wrote a line that is not JSON: ${line}`);
      }
      expect(typeof parsed).toBe('object');
      return parsed as Record<string, unknown>;
    });
}

describe('worker logs', () => {
  it('are one JSON line each, from start-up through a workflow to shutdown', async () => {
    const taskQueue = uniqueId('json-logs');
    const worker = await spawnWorkerProcess(
      taskQueue,
      { LOG_LEVEL: 'info', NODE_ENV: 'production' },
      // The bundler's own messages are among the lines checked.
      { bundleAtStart: true },
    );
    let stopped = false;
    try {
      const ready = jsonLines(worker.output);
      const customer = await createCustomer(db);
      const id = uniqueId('adj');
      const result: AdjustmentState = await temporal.workflow.execute<typeof adjustment>(
        'adjustment',
        {
          taskQueue,
          workflowId: workflowIds.adjustment(id),
          args: [
            {
              adjustmentId: id,
              customerId: customer.id,
              amount: 5,
              reason: 'json logs',
              requestedBy: 'test',
            },
          ],
        },
      );
      expect(result.status).toBe('completed');
      await worker.stop();
      stopped = true;

      const all = jsonLines(worker.output);
      expect(all.length).toBeGreaterThan(ready.length);
      expect(all.some((l) => l['msg'] === 'worker stopped')).toBe(true);
      for (const line of all) expect(typeof line['level']).toBe('number');
      // The SDK's and the bundler's messages went through pino, tagged with their source.
      const sdk = all.filter((l) => l['source'] === 'temporal-sdk');
      expect(sdk.some((l) => l['component'] === 'worker')).toBe(true);
      expect(sdk.some((l) => String(l['msg']).startsWith('Workflow bundle created'))).toBe(true);
    } finally {
      if (!stopped) await worker.stop();
    }
  });
});
