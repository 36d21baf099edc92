// Ledger activities: every balance change a workflow makes goes through the posting function.
import { ApplicationFailure, log } from '@temporalio/activity';
import type { Database } from '../db/client.js';
import { BusinessError, type BusinessErrorCode } from '../errors.js';
import { closeUnlessPosted, recordedRefusal, refusalMark } from '../ledger/fences.js';
import { spendable } from '../ledger/grants.js';
import type { Ledger } from '../ledger/ledger.js';
import type { AdjustmentInput } from '../shared.js';

export interface LedgerActivityDeps {
  db: Database;
  ledger: Ledger;
}

/**
 * Credits a wallet can give now: its open, effective, unexpired grants (a future-dated grant or one
 * past its expiry is in the balance but cannot be drawn). What a debit or claw-back can take.
 */
export async function spendableCredits(db: Database, customerId: string): Promise<number> {
  return Number(await db.sql.begin((tx) => spendable(tx, customerId)));
}

/** Business refusals become non-retryable failures with a stable type; the rest retries. */
export async function refusalsAreFinal<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof BusinessError) {
      throw ApplicationFailure.create({
        message: err.message,
        type: err.code,
        nonRetryable: true,
        details: [err.details],
      });
    }
    throw err;
  }
}

/**
 * A business refusal of a fenced forward step closes its fence: an earlier attempt of the same
 * step that is still running (it outlived its timeout) can then never post after the workflow was
 * told "refused". If that attempt posted first, its entry is the answer instead of the refusal.
 */
export async function finalRefusalClosesStep<T>(
  db: Database,
  fence: string,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    // An earlier attempt was refused and closed the step, but its answer never reached the
    // workflow (its worker died, or it timed out): that refusal is this attempt's answer too,
    // not a closed step. Nothing was posted by either.
    const code = recordedRefusal(err) as BusinessErrorCode | undefined;
    if (code) {
      throw new BusinessError(
        code,
        `refused (${code}) by an earlier attempt of this step, whose answer was lost; nothing was charged`,
        { fence, refusedEarlier: true },
      );
    }
    if (!(err instanceof BusinessError)) throw err;
    const found = await closeUnlessPosted(db.sql, fence, refusalMark(err.code));
    if (found.posted) return work();
    throw err;
  }
}

export function createLedgerActivities({ db, ledger }: LedgerActivityDeps) {
  return {
    /** Posts an admin adjustment and records it (read model + audit) in the same transaction. */
    async applyAdjustment(
      input: AdjustmentInput & { workflowId: string },
    ): Promise<{ entryId: number; balanceAfter: number; replayed: boolean }> {
      return refusalsAreFinal(async () => {
        const posted = await ledger.postEntry(
          {
            idempotencyKey: `${input.workflowId}:post`,
            type: 'adjustment',
            description: `Adjustment: ${input.reason}`,
            workflowId: input.workflowId,
            metadata: {
              adjustmentId: input.adjustmentId,
              requestedBy: input.requestedBy,
              ...(input.amount > 0 ? { category: input.category ?? 'paid' } : {}),
            },
            lines: [
              input.amount > 0
                ? {
                    account: { wallet: input.customerId },
                    amount: input.amount,
                    credit: {
                      grant: {
                        category: input.category ?? 'paid',
                        source: 'adjustment',
                        reason: input.reason.slice(0, 500),
                        metadata: { adjustmentId: input.adjustmentId },
                      },
                    },
                  }
                : { account: { wallet: input.customerId }, amount: input.amount },
              { account: { system: 'adjustments' }, amount: -input.amount },
            ],
          },
          async (tx, entry) => {
            const balanceAfter = entry.lines[0]!.balanceAfterExact;
            await tx`
              insert into adjustments (id, workflow_id, customer_id, amount, reason, requested_by,
                                       status, entry_id, balance_after)
              values (${input.adjustmentId}, ${input.workflowId}, ${input.customerId}, ${input.amount},
                      ${input.reason}, ${input.requestedBy}, 'completed', ${entry.entryId}, ${balanceAfter})
              on conflict (id) do update set status = 'completed', entry_id = excluded.entry_id,
                balance_after = excluded.balance_after, updated_at = now()`;
            await tx`
              insert into audit_log (idempotency_key, actor, action, target_type, target_id, reason, details)
              values (${`${input.workflowId}:audit`}, ${input.requestedBy}, 'credit_adjustment',
                      'customer', ${input.customerId}, ${input.reason},
                      ${JSON.stringify({ adjustmentId: input.adjustmentId, amount: input.amount, ...(input.amount > 0 ? { category: input.category ?? 'paid', grantId: entry.grants.find((g) => g.kind === 'grant')?.grantId } : {}), entryId: entry.entryId, outcome: 'completed' })}::jsonb)
              on conflict (idempotency_key) do nothing`;
          },
        );
        const wallet = posted.lines.find((l) => 'wallet' in l.account)!;
        log.info('adjustment posted', {
          adjustmentId: input.adjustmentId,
          entryId: posted.entryId,
          amount: input.amount,
          replayed: posted.replayed,
        });
        return {
          entryId: posted.entryId,
          balanceAfter: wallet.balanceAfter,
          replayed: posted.replayed,
        };
      });
    },

    /** Records a refused adjustment so the read model and audit log show the refusal. */
    async rejectAdjustment(
      input: AdjustmentInput & { workflowId: string; error: { code: string; message: string } },
    ): Promise<void> {
      await db.sql.begin(async (tx) => {
        await tx`
          insert into adjustments (id, workflow_id, customer_id, amount, reason, requested_by,
                                   status, error_code, error_message)
          values (${input.adjustmentId}, ${input.workflowId}, ${input.customerId}, ${input.amount},
                  ${input.reason}, ${input.requestedBy}, 'rejected', ${input.error.code}, ${input.error.message})
          on conflict (id) do nothing`;
        await tx`
          insert into audit_log (idempotency_key, actor, action, target_type, target_id, reason, details)
          values (${`${input.workflowId}:audit`}, ${input.requestedBy}, 'credit_adjustment',
                  'customer', ${input.customerId}, ${input.reason},
                  ${JSON.stringify({ adjustmentId: input.adjustmentId, amount: input.amount, outcome: 'rejected', error: input.error.code })}::jsonb)
          on conflict (idempotency_key) do nothing`;
      });
      log.info('adjustment rejected', { adjustmentId: input.adjustmentId, code: input.error.code });
    },
  };
}
