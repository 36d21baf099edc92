// What refund activities are built from.
import type { Database } from '../../db/client.js';
import type { Ledger } from '../../ledger/ledger.js';
import type { WorkerMetrics } from '../../metrics.js';
import type { StripeGateway } from '../../stripe/gateway.js';

export interface RefundActivityDeps {
  db: Database;
  ledger: Ledger;
  /** Absent in processes without Stripe; a refund that needs it retries until it is configured. */
  stripe?: StripeGateway | undefined;
  metrics?: WorkerMetrics | undefined;
}
