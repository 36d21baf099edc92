// The activity factory: dependencies go in, so tests and the worker build the same activities.
import type { Database } from '../db/client.js';
import { createLedger, type Ledger } from '../ledger/ledger.js';
import { createLedgerActivities } from './ledger.js';

export interface ActivityDeps {
  db: Database;
  ledger?: Ledger;
}

export function createActivities(deps: ActivityDeps) {
  const ledger = deps.ledger ?? createLedger(deps.db.sql);
  return {
    ...createLedgerActivities({ db: deps.db, ledger }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
