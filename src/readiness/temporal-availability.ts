// Telling "Temporal did not answer" apart from every other failure, so the API can answer 503
// with Retry-After (the request may simply be sent again) instead of a 500.
import { isGrpcServiceError } from '@temporalio/client';

/** What a refusal for Temporal being down tells the client to wait, in seconds. */
export const TEMPORAL_RETRY_AFTER_SECONDS = 5;

export const TEMPORAL_UNAVAILABLE_MESSAGE =
  'The workflow service is not reachable, so nothing was started or charged. Retry after a few ' +
  'seconds (with the same Idempotency-Key for a POST; it is applied at most once).';

const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;

/** Temporal is down, unreachable or past the call's deadline, at any depth of causes. */
export function isTemporalUnavailable(err: unknown): boolean {
  for (let cause = err; cause instanceof Error; cause = cause.cause) {
    if (isGrpcServiceError(cause)) {
      const code = Number(cause.code);
      if (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED) return true;
    }
  }
  return false;
}
