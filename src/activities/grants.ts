// Grant activities: post an admin grant, and close a grant (expiry or void) exactly once, however
// often a workflow, a restarted worker or the reconciliation backstop asks.
import { log } from '@temporalio/activity';
import type { Database } from '../db/client.js';
import type { GrantCategory } from '../ledger/grants.js';
import type { ClosedGrant, Ledger, Tx } from '../ledger/ledger.js';
import { grantExpired } from '../notifications/messages.js';
import type { VoidGrantRequest } from '../shared.js';
import { refusalsAreFinal } from './ledger.js';
import { enqueueNotifications } from './notifications.js';

export interface GrantActivityDeps {
  db: Database;
  ledger: Ledger;
}

/** An admin grant as the workflow posts it. */
export interface PostGrantInput {
  grantId: string;
  customerId: string;
  workflowId: string;
  credits: number;
  category: GrantCategory;
  source: 'adjustment' | 'promotion';
  effectiveAt: string | null;
  expiresAt: string | null;
  priority: number;
  reason: string;
  requestedBy: string;
  /** Hash of the request that asked for it: a repeated Idempotency-Key is compared with it. */
  requestHash: string | null;
}

/** The ledger entry that posts an admin grant: its key and type name it after the grant. */
export const grantEntryKey = (grantId: string) => `grant:${grantId}`;

/**
 * Expires a grant: the remainder goes to breakage and the customer is told, in the same
 * transaction. Idempotent (closeGrant moves nothing the second time, the message key is fixed),
 * so the grant workflow and the reconciliation backstop may both call it. Runs inside an activity.
 */
export async function expireGrantOnce(
  ledger: Ledger,
  input: { grantId: string; workflowId?: string | null },
): Promise<ClosedGrant> {
  const closed = await ledger.closeGrant(
    { grantId: input.grantId, kind: 'expiry', workflowId: input.workflowId ?? null },
    async (tx: Tx, entry) => {
      const [grant] = await tx<{ category: string; expires_at: Date | null }[]>`
        select category, expires_at from grants where id = ${input.grantId}::uuid`;
      const wallet = entry.lines.find((l) => 'wallet' in l.account);
      if (!grant || !wallet) return;
      await enqueueNotifications(
        tx,
        entry,
        grantExpired({
          grantId: input.grantId,
          customerId: (wallet.account as { wallet: string }).wallet,
          category: grant.category,
          credits: -wallet.amount,
          expiresAt: grant.expires_at ? new Date(grant.expires_at).toISOString() : null,
          balanceAfter: wallet.balanceAfterExact,
        }),
      );
    },
  );
  log.info('grant expiry', {
    grantId: input.grantId,
    credits: closed.credits,
    closedNow: closed.closedNow,
    status: closed.status,
  });
  return closed;
}

const closedResult = (closed: ClosedGrant) => ({
  status: closed.status,
  credits: closed.credits,
  closedNow: closed.closedNow,
  entryId: closed.entry?.entryId ?? null,
});

export function createGrantActivities({ db, ledger }: GrantActivityDeps) {
  return {
    /** Posts an admin grant (wallet +credits as the new grant, adjustments −credits) and audits it. */
    async postGrant(input: PostGrantInput): Promise<{ entryId: number; replayed: boolean }> {
      return refusalsAreFinal(async () => {
        const posted = await ledger.postEntry(
          {
            idempotencyKey: grantEntryKey(input.grantId),
            type: 'grant',
            description: `Grant (${input.category}): ${input.reason}`,
            workflowId: input.workflowId,
            metadata: { grantId: input.grantId, requestedBy: input.requestedBy },
            lines: [
              {
                account: { wallet: input.customerId },
                amount: input.credits,
                credit: {
                  grant: {
                    id: input.grantId,
                    category: input.category,
                    source: input.source,
                    priority: input.priority,
                    ...(input.effectiveAt ? { effectiveAt: input.effectiveAt } : {}),
                    expiresAt: input.expiresAt,
                    reason: input.reason,
                    metadata: {
                      requestedBy: input.requestedBy,
                      ...(input.requestHash ? { requestHash: input.requestHash } : {}),
                    },
                  },
                },
              },
              { account: { system: 'adjustments' }, amount: -input.credits },
            ],
          },
          async (tx) => {
            await tx`
              insert into audit_log (idempotency_key, actor, action, target_type, target_id, reason, details)
              values (${`${grantEntryKey(input.grantId)}:audit`}, ${input.requestedBy}, 'credit_grant',
                      'customer', ${input.customerId}, ${input.reason},
                      ${JSON.stringify({
                        grantId: input.grantId,
                        credits: input.credits,
                        category: input.category,
                        priority: input.priority,
                        effectiveAt: input.effectiveAt,
                        expiresAt: input.expiresAt,
                        outcome: 'granted',
                      })}::jsonb)
              on conflict (idempotency_key) do nothing`;
          },
        );
        log.info('grant posted', {
          grantId: input.grantId,
          entryId: posted.entryId,
          credits: input.credits,
          replayed: posted.replayed,
        });
        return { entryId: posted.entryId, replayed: posted.replayed };
      });
    },

    /** Records a refused admin grant in the audit log (nothing was posted). */
    async recordGrantRefused(
      input: PostGrantInput & { error: { code: string; message: string } },
    ): Promise<void> {
      await db.sql`
        insert into audit_log (idempotency_key, actor, action, target_type, target_id, reason, details)
        values (${`${grantEntryKey(input.grantId)}:audit`}, ${input.requestedBy}, 'credit_grant',
                'customer', ${input.customerId}, ${input.reason},
                ${JSON.stringify({ grantId: input.grantId, credits: input.credits, outcome: 'refused', error: input.error.code })}::jsonb)
        on conflict (idempotency_key) do nothing`;
      log.info('grant refused', { grantId: input.grantId, code: input.error.code });
    },

    /** Expires a grant at its expiresAt (once: a repeat or a closed grant moves nothing). */
    async expireGrant(input: { grantId: string; workflowId: string }) {
      return refusalsAreFinal(async () => closedResult(await expireGrantOnce(ledger, input)));
    },

    /** Voids a grant: what is left goes to breakage; audited once, whoever asked again. */
    async voidGrant(input: { grantId: string; workflowId: string } & VoidGrantRequest) {
      return refusalsAreFinal(async () => {
        const closed = await ledger.closeGrant({
          grantId: input.grantId,
          kind: 'void',
          reason: input.reason,
          workflowId: input.workflowId,
        });
        if (closed.status === 'voided') {
          // What the void removed, from the ledger (a retried attempt sees closedNow false).
          const [removed] = await db.sql<{ credits: string }[]>`
            select coalesce(-sum(amount), 0)::text as credits from grant_postings
            where grant_id = ${input.grantId}::uuid and kind = 'void'`;
          await db.sql`
            insert into audit_log (idempotency_key, actor, action, target_type, target_id, reason, details)
            values (${`grant-void:${input.grantId}:audit`}, ${input.requestedBy}, 'grant_void',
                    'customer', ${closed.customerId}, ${input.reason},
                    ${JSON.stringify({ grantId: input.grantId, credits: Number(removed?.credits ?? 0) })}::jsonb)
            on conflict (idempotency_key) do nothing`;
        }
        log.info('grant void', {
          grantId: input.grantId,
          credits: closed.credits,
          closedNow: closed.closedNow,
          status: closed.status,
        });
        return closedResult(closed);
      });
    },
  };
}
