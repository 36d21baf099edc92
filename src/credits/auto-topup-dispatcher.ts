// The auto top-up dispatcher: starts the charge workflow for charges the posting transaction
// requested. A request stays `requested` until a run settles it, so a crash loses none.
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Sql } from '../db/client.js';
import type { Logger } from '../logger.js';
import { searchAttributes, workflowIds } from '../shared.js';
import type { autoTopup } from '../workflows/auto-topup.js';
import { createPollLoop } from '../poll-loop.js';

export interface AutoTopupDispatcherSettings {
  /** How often to look for requested charges. */
  pollIntervalMs: number;
  /** How long a charge handed to a run (or found with one running) waits before it is looked at again. */
  retryAfterMs: number;
  batchSize: number;
}

export interface AutoTopupDispatcherDeps {
  sql: Sql;
  temporal: Client;
  /** Starts the runs for charges requested on this task queue, on this task queue. */
  taskQueue: string;
  logger: Logger;
  settings: AutoTopupDispatcherSettings;
}

export interface AutoTopupDispatcher {
  start(): void;
  /** Finishes the batch in hand and stops; safe to call twice. */
  stop(): Promise<void>;
  /** Starts runs for one batch of requested charges now; returns how many runs it started. */
  runOnce(): Promise<number>;
}

/** The worker's settings: it looks as often as the outbox does, and again after 30 s. */
export function autoTopupDispatchSettings(pollIntervalMs: number): AutoTopupDispatcherSettings {
  return { pollIntervalMs, retryAfterMs: 30_000, batchSize: 50 };
}

const describe = (err: unknown) =>
  (err instanceof Error ? err.message : String(err)).slice(0, 1000);

export function createAutoTopupDispatcher(deps: AutoTopupDispatcherDeps): AutoTopupDispatcher {
  const { sql, temporal, taskQueue, logger, settings } = deps;

  async function runOnce(): Promise<number> {
    return sql.begin(async (tx) => {
      // Rows another dispatcher holds are skipped; a row handed to a run is looked at again only
      // after retryAfterMs, in case that run ended without settling it.
      const rows = await tx<{ id: string; customer_id: string }[]>`
        select id, customer_id from auto_topup_charges
        where task_queue = ${taskQueue} and status = 'requested'
          and (workflow_id is null
               or updated_at < now() - ${settings.retryAfterMs} * interval '1 millisecond')
        order by created_at
        limit ${settings.batchSize}
        for update skip locked`;
      let started = 0;
      for (const customerId of new Set(rows.map((r) => r.customer_id))) {
        const workflowId = workflowIds.autoTopup(customerId);
        try {
          await temporal.workflow.start<typeof autoTopup>('autoTopup', {
            taskQueue,
            workflowId,
            args: [{ customerId }],
            // One run at a time per customer; a finished one may be followed by another.
            workflowIdConflictPolicy: 'FAIL',
            workflowIdReusePolicy: 'ALLOW_DUPLICATE',
            typedSearchAttributes: [{ key: searchAttributes.customerId, value: customerId }],
          });
          started++;
        } catch (err) {
          // A run is working through this customer's charges: it takes this one too, or the
          // next look starts another run once it has ended.
          if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
        }
        await tx`
          update auto_topup_charges set workflow_id = ${workflowId}, updated_at = now()
          where customer_id = ${customerId} and status = 'requested'
            and id = any(${rows.filter((r) => r.customer_id === customerId).map((r) => r.id)})`;
      }
      if (started > 0) logger.info({ taskQueue, started }, 'auto top-up runs started');
      return started;
    });
  }

  const loop = createPollLoop({
    pollIntervalMs: settings.pollIntervalMs,
    round: async () => {
      await runOnce();
      return false;
    },
    // Database or Temporal unreachable: the requests stay requested; try again.
    onError: (err) =>
      logger.warn({ error: describe(err), taskQueue }, 'auto top-up dispatch failed; will retry'),
  });

  return {
    ...loop,
    runOnce,
  };
}
