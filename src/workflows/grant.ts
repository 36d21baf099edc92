// grant: a grant's life in a workflow — posts an admin grant, then waits for its expiry (or a
// void) and closes it exactly once. Id `grant-<grantId>`.
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { ParentClosePolicy, startChild } from '@temporalio/workflow';

export interface GrantWorkflowInput {
  grantId: string;
  customerId: string;
  /** When set the grant does not exist yet: this workflow posts it first (admin grants). */
  create?: {
    credits: number;
    category: 'paid' | 'promotional';
    source: 'adjustment' | 'promotion';
    effectiveAt?: string | null;
    priority?: number;
    reason: string;
    requestedBy: string;
  };
  /** ISO instant at which the grant expires; none: the workflow only waits for a void. */
  expiresAt?: string | null;
}

export interface GrantWorkflowResult {
  grantId: string;
  status: 'open' | 'expired' | 'voided' | 'rejected';
}

/** Not built yet. */
export async function grant(input: GrantWorkflowInput): Promise<GrantWorkflowResult> {
  return { grantId: input.grantId, status: 'open' };
}

/**
 * From a parent workflow that created a grant with an expiry: starts `grant-<id>` to expire it on
 * time, abandoned so it outlives the parent; a lifecycle already running is left alone.
 */
export async function watchGrantExpiry(
  grantId: string,
  customerId: string,
  expiresAt: string,
): Promise<void> {
  try {
    await startChild(grant, {
      workflowId: `grant-${grantId}`,
      args: [{ grantId, customerId, expiresAt }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}
