// Verification activities: the debit and refund postings (with the read model in the same
// transaction) and the SMS provider calls, each idempotent by a key derived from the workflow.
import { ApplicationFailure, log } from '@temporalio/activity';
import type { Database } from '../db/client.js';
import { BusinessError } from '../errors.js';
import type { Ledger } from '../ledger/ledger.js';
import type { WorkerMetrics } from '../metrics.js';
import type { RefundReason, VerificationInput } from '../shared.js';
import { verificationDebited, verificationRefunded } from '../notifications/messages.js';
import { ProviderRefusal, type SmsProvider } from '../sms/provider.js';
import { closeUnlessPosted } from '../ledger/fences.js';
import { finalRefusalClosesStep, refusalsAreFinal } from './ledger.js';
import { enqueueNotifications } from './notifications.js';

type Ids = VerificationInput & { workflowId: string };

/** The idempotency (and fence) key of a verification's debit: its refunds give back to what it drew. */
export const verificationDebitKey = (workflowId: string) => `${workflowId}:debit`;

export function createVerificationActivities(deps: {
  db: Database;
  ledger: Ledger;
  sms: SmsProvider;
  metrics?: WorkerMetrics | undefined;
}) {
  const { db, ledger, sms, metrics } = deps;

  /** The debit posting and the read model, in one transaction, behind the step's fence. */
  async function post(input: Ids): Promise<{ entryId: number; balanceAfter: number }> {
    const posted = await ledger.postEntry(
      {
        idempotencyKey: verificationDebitKey(input.workflowId),
        fence: verificationDebitKey(input.workflowId),
        type: 'verification_purchase',
        description: `${input.service} verification (${input.country})`,
        workflowId: input.workflowId,
        metadata: { verificationId: input.verificationId },
        lines: [
          { account: { wallet: input.customerId }, amount: -input.price },
          { account: { system: 'revenue' }, amount: input.price },
        ],
      },
      async (tx, entry) => {
        await tx`
          insert into verifications (id, workflow_id, customer_id, service, country, price,
                                     timeout_seconds, status, debit_entry_id)
          values (${input.verificationId}, ${input.workflowId}, ${input.customerId}, ${input.service},
                  ${input.country}, ${input.price}, ${input.timeoutSeconds}, 'pending', ${entry.entryId})
          on conflict (id) do update set debit_entry_id = excluded.debit_entry_id, updated_at = now()`;
        await enqueueNotifications(
          tx,
          entry,
          verificationDebited({ ...input, balanceAfter: entry.lines[0]!.balanceAfter }),
        );
      },
    );
    return { entryId: posted.entryId, balanceAfter: posted.lines[0]!.balanceAfter };
  }

  return {
    /** Takes the price from the wallet and records the verification, in one transaction. */
    async debitVerification(input: Ids): Promise<{ entryId: number; balanceAfter: number }> {
      return refusalsAreFinal(() =>
        finalRefusalClosesStep(db, verificationDebitKey(input.workflowId), () => post(input)),
      );
    },

    /** Records a purchase refused before any money moved (e.g. not enough credits). */
    async recordVerificationFailed(
      input: Ids & { error: { code: string; message: string } },
    ): Promise<void> {
      await db.sql`
        insert into verifications (id, workflow_id, customer_id, service, country, price,
                                   timeout_seconds, status, error)
        values (${input.verificationId}, ${input.workflowId}, ${input.customerId}, ${input.service},
                ${input.country}, ${input.price}, ${input.timeoutSeconds}, 'failed', ${input.error.code})
        on conflict (id) do nothing`;
    },

    /** Rents a number; a permanent refusal is final, anything else is retried by the workflow. */
    async rentNumber(input: Ids): Promise<{ providerRef: string; phoneNumber: string }> {
      try {
        return await sms.rentNumber({
          verificationId: input.verificationId,
          service: input.service,
          country: input.country,
          idempotencyKey: `${input.workflowId}:rent`,
        });
      } catch (err) {
        if (err instanceof ProviderRefusal) {
          throw ApplicationFailure.create({
            type: 'provider_refused',
            message: err.message,
            nonRetryable: true,
          });
        }
        throw err;
      }
    },

    /** The number is rented: the read model shows it to the owner. */
    async markVerificationActive(
      input: Ids & { providerRef: string; phoneNumber: string },
    ): Promise<void> {
      await db.sql`
        update verifications
        set status = 'active', phone_number = ${input.phoneNumber}, provider_ref = ${input.providerRef},
            updated_at = now()
        where id = ${input.verificationId} and status = 'pending'`;
    },

    /** The code arrived: completed, unless a refund got there first (which the workflow prevents). */
    async completeVerification(input: Ids & { code: string }): Promise<void> {
      const updated = await db.sql`
        update verifications set status = 'completed', code = ${input.code}, updated_at = now()
        where id = ${input.verificationId} and status in ('pending', 'active')`;
      if (updated.count === 0) {
        const [row] = await db.sql<{ status: string }[]>`
          select status from verifications where id = ${input.verificationId}`;
        if (row?.status !== 'completed') {
          throw ApplicationFailure.create({
            type: 'verification_closed',
            message: `verification ${input.verificationId} is ${row?.status ?? 'missing'}, not completable`,
            nonRetryable: true,
          });
        }
      }
    },

    /**
     * Reverses the debit, if one was posted (found by its key, so a debit whose answer was lost is
     * still reversed), and marks the verification refunded in the same transaction. Never for a
     * completed verification; never twice.
     */
    async refundVerification(
      input: Ids & { reason: RefundReason; failedAtMs: number },
    ): Promise<{ refunded: boolean; balanceAfter: number | null; entryId: number | null }> {
      return refundVerificationDebit({ db, ledger, metrics }, input);
    },

    /** Releases a number rented for this verification whose answer never reached us. */
    async releaseRentalByReference(input: Ids): Promise<void> {
      await sms.releaseByReference({
        verificationId: input.verificationId,
        idempotencyKey: `${input.workflowId}:release-by-reference`,
      });
    },

    /** A release that kept failing: flagged on the verification for an operator, and alerted. */
    async flagReleaseFailed(
      input: Ids & { providerRef: string | null; error: string },
    ): Promise<void> {
      // eslint-disable-next-line no-control-regex
      const error = input.error.replace(/[\u0000-\u001f]/g, ' ').slice(0, 500);
      await db.sql`
        update verifications
        set release_failed_at = coalesce(release_failed_at, now()), release_error = ${error},
            updated_at = now()
        where id = ${input.verificationId}`;
      metrics?.releaseFailures.inc();
      log.error('releasing the phone number kept failing; flagged for an operator', {
        verificationId: input.verificationId,
        providerRef: input.providerRef,
        error,
      });
    },

    /** Tells the provider to release the number (bounded retries; then flagged). */
    async releaseNumber(input: Ids & { providerRef: string }): Promise<void> {
      await sms.releaseNumber({
        providerRef: input.providerRef,
        idempotencyKey: `${input.workflowId}:release`,
      });
    },
  };
}

/**
 * Gives a verification's price back, once: under the debit's fence, so either the debit is there
 * to reverse or it never can be posted. The verification workflow's refund step, and the repair
 * reconciliation makes for a verification whose workflow ended without settling it.
 */
export async function refundVerificationDebit(
  deps: { db: Database; ledger: Ledger; metrics?: WorkerMetrics | undefined },
  input: Ids & { reason: RefundReason; failedAtMs: number },
): Promise<{ refunded: boolean; balanceAfter: number | null; entryId: number | null }> {
  const { db, ledger, metrics } = deps;
  // Under the debit's fence: either the debit is there to reverse, or it never can be.
  const debit = await closeUnlessPosted(
    db.sql,
    verificationDebitKey(input.workflowId),
    `${input.workflowId}:refund`,
    async (tx) => {
      await tx`
        update verifications set status = 'refunded', refund_reason = ${input.reason}, updated_at = now()
        where id = ${input.verificationId} and status <> 'completed'`;
    },
  );
  if (!debit.posted) {
    log.info('nothing to refund: no debit was posted, and now none can be', {
      verificationId: input.verificationId,
    });
    return { refunded: false, balanceAfter: null, entryId: null };
  }
  return refusalsAreFinal(async () => {
    const posted = await ledger.postEntry(
      {
        idempotencyKey: `${input.workflowId}:refund`,
        type: 'verification_refund',
        description: `Refund: ${input.service} verification (${input.country}), ${input.reason.replace('_', ' ')}`,
        workflowId: input.workflowId,
        metadata: {
          verificationId: input.verificationId,
          reason: input.reason,
          debitEntryId: debit.entryId,
        },
        lines: [
          // Back to the grants the debit drew from; a share whose grant closed is breakage.
          {
            account: { wallet: input.customerId },
            amount: input.price,
            credit: { returnTo: verificationDebitKey(input.workflowId) },
          },
          { account: { system: 'revenue' }, amount: -input.price },
        ],
      },
      async (tx, entry) => {
        const updated = await tx`
          update verifications
          set status = 'refunded', refund_reason = ${input.reason}, refund_entry_id = ${entry.entryId},
              updated_at = now()
          where id = ${input.verificationId} and status <> 'completed'`;
        if (updated.count === 0) {
          throw new BusinessError(
            'verification_closed',
            `verification ${input.verificationId} is completed; it cannot be refunded`,
          );
        }
        await enqueueNotifications(
          tx,
          entry,
          verificationRefunded({ ...input, balanceAfter: entry.lines[0]!.balanceAfter }),
        );
      },
    );
    if (!posted.replayed) {
      metrics?.refundLatency.observe(
        { flow: 'verification', reason: input.reason },
        Math.max(0, posted.createdAt.getTime() - input.failedAtMs) / 1000,
      );
    }
    log.info('verification refunded', {
      verificationId: input.verificationId,
      reason: input.reason,
      entryId: posted.entryId,
      replayed: posted.replayed,
    });
    return {
      refunded: true,
      balanceAfter: posted.lines[0]!.balanceAfter,
      entryId: posted.entryId,
    };
  });
}
