// Reconciliation activities: Stripe listings, comparisons, repairs and the report.
import type { Client } from '@temporalio/client';
import type { Database } from '../../db/client.js';
import type { Ledger } from '../../ledger/ledger.js';
import type { WorkerMetrics } from '../../metrics.js';
import type { StripeGateway } from '../../stripe/gateway.js';

export interface ReconciliationActivityDeps {
  db: Database;
  ledger: Ledger;
  stripe?: StripeGateway | undefined;
  metrics?: WorkerMetrics | undefined;
  /** Repairs start workflows (signal-with-start) through this client, on this task queue. */
  temporal?: Client | undefined;
  taskQueue?: string | undefined;
}

/** Reconciliation steps that must eventually happen whatever the error. */
export const RECONCILIATION_MUST_FINISH: readonly string[] = [];

export function createReconciliationActivities(_deps: ReconciliationActivityDeps) {
  return {};
}
