// Telling a business refusal (a stable, non-retryable type) from anything else an activity throws.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import { BUSINESS_FAILURE_TYPES } from '../shared.js';

/** The refusal an activity raised, or undefined when the failure is not a business refusal. */
export function businessFailure(err: unknown): ApplicationFailure | undefined {
  if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure) {
    const type = err.cause.type ?? '';
    if ((BUSINESS_FAILURE_TYPES as readonly string[]).includes(type)) return err.cause;
  }
  return undefined;
}

/** A failure the activity marked final (non-retryable): retrying the step cannot help. */
export function finalFailure(err: unknown): ApplicationFailure | undefined {
  if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure) {
    if (err.cause.nonRetryable) return err.cause;
  }
  return undefined;
}
