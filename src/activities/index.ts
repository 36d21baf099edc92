// The activity factory: dependencies go in, so tests and the worker build the same activities.
import type { Client } from '@temporalio/client';
import { postingAlertHook, type PostingAlertRules } from '../alerts/rules.js';
import type { Database } from '../db/client.js';
import { createLedger, type Ledger } from '../ledger/ledger.js';
import type { WorkerMetrics } from '../metrics.js';
import { SimulatedSmsProvider, type SmsProvider } from '../sms/provider.js';
import type { CreditPacks } from '../payments/packs.js';
import type { StripeGateway } from '../stripe/gateway.js';
import { createAutoTopupActivities } from './auto-topup.js';
import { createCheckoutActivities } from './checkout.js';
import { guardActivities } from './failures.js';
import { createGrantActivities } from './grants.js';
import { createLedgerActivities } from './ledger.js';
import { createMarketplaceActivities, type MarketplaceHooks } from './marketplace.js';
import { createNotificationActivities } from './notifications.js';
import {
  RECONCILIATION_MUST_FINISH,
  createReconciliationActivities,
} from './reconciliation/index.js';
import { REFUND_MUST_FINISH, createRefundActivities } from './refunds/index.js';
import { createVerificationActivities } from './verification.js';

export interface ActivityDeps {
  db: Database;
  ledger?: Ledger;
  metrics?: WorkerMetrics;
  /** The simulated provider when absent (local runs and tests). */
  sms?: SmsProvider;
  /** Test seams for the order workflow's steps; production passes none. */
  marketplaceHooks?: MarketplaceHooks;
  /** Stripe for checkouts; tests pass a recording double in front of stripe-mock. */
  stripe?: StripeGateway | undefined;
  /** The credit packs on sale (CREDIT_PACKS, as the API has them); the defaults when absent. */
  packs?: CreditPacks | undefined;
  /** Failed attempts from which an activity that keeps retrying is alerted on (default 5). */
  alertAfterAttempts?: number;
  /** For activities that start or signal workflows (reconciliation repairs). */
  temporal?: Client | undefined;
  taskQueue?: string | undefined;
  /**
   * Posting alert rules (large deduction, velocity), run after each posting commits; none when
   * absent. They hang on the ledger this factory builds, so a `ledger` passed in runs none.
   */
  alertRules?: PostingAlertRules | undefined;
}

/**
 * Steps that must eventually happen whatever the error (compensations, and crediting a payment
 * that was received): a permanent error is retried and alerted on rather than given up.
 */
const MUST_FINISH = new Set([
  'refundVerification',
  'refundOrder',
  'expireCheckoutSession',
  'settleUnpaidPayment',
  'markPaymentPaid',
  'creditTopup',
  'notify',
  // A card that was charged is credited; a decline is recorded (and the customer told).
  'creditAutoTopup',
  'recordAutoTopupFailure',
  'expireGrant',
  'voidGrant',
  ...REFUND_MUST_FINISH,
  ...RECONCILIATION_MUST_FINISH,
]);

export function createActivities(deps: ActivityDeps) {
  const ledger =
    deps.ledger ??
    createLedger(deps.db.sql, deps.metrics?.transactions, {
      latency: deps.metrics?.ledgerWriteDuration,
      ...(deps.alertRules
        ? {
            afterCommit: postingAlertHook(deps.db.sql, deps.alertRules, deps.metrics?.alertsRaised),
          }
        : {}),
    });
  const activities = {
    ...createLedgerActivities({ db: deps.db, ledger }),
    ...createGrantActivities({ db: deps.db, ledger }),
    ...createNotificationActivities({ db: deps.db, metrics: deps.metrics }),
    ...createVerificationActivities({
      db: deps.db,
      ledger,
      sms: deps.sms ?? new SimulatedSmsProvider(),
      metrics: deps.metrics,
    }),
    ...createMarketplaceActivities({ db: deps.db, ledger, hooks: deps.marketplaceHooks }),
    ...createCheckoutActivities({ db: deps.db, ledger, stripe: deps.stripe, packs: deps.packs }),
    ...createAutoTopupActivities({ db: deps.db, ledger, stripe: deps.stripe }),
    ...createRefundActivities({
      db: deps.db,
      ledger,
      stripe: deps.stripe,
      metrics: deps.metrics,
    }),
    ...createReconciliationActivities({
      db: deps.db,
      ledger,
      stripe: deps.stripe,
      metrics: deps.metrics,
      temporal: deps.temporal,
      taskQueue: deps.taskQueue,
    }),
  };
  return guardActivities(activities, {
    metrics: deps.metrics,
    alertSql: deps.db.sql,
    alertAfterAttempts: deps.alertAfterAttempts,
    keepRetrying: MUST_FINISH,
  });
}

export type Activities = ReturnType<typeof createActivities>;
