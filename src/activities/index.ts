// The activity factory: dependencies go in, so tests and the worker build the same activities.
import type { Database } from '../db/client.js';
import { createLedger, type Ledger } from '../ledger/ledger.js';
import type { WorkerMetrics } from '../metrics.js';
import type { StripeGateway } from '../stripe/gateway.js';
import { createCheckoutActivities } from './checkout.js';
import { createLedgerActivities } from './ledger.js';
import { createNotificationActivities } from './notifications.js';

export interface ActivityDeps {
  db: Database;
  ledger?: Ledger;
  metrics?: WorkerMetrics;
  /** Stripe for checkouts; tests pass a recording double in front of stripe-mock. */
  stripe?: StripeGateway | undefined;
}

export function createActivities(deps: ActivityDeps) {
  const ledger = deps.ledger ?? createLedger(deps.db.sql, deps.metrics?.transactions);
  return {
    ...createLedgerActivities({ db: deps.db, ledger }),
    ...createNotificationActivities({ db: deps.db, metrics: deps.metrics }),
    ...createCheckoutActivities({ db: deps.db, ledger, stripe: deps.stripe }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
