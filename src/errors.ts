// Business refusals with a stable code; shared by the ledger, activities and the API.

/** Codes a caller can act on. The API maps each to one HTTP status (src/api/errors.ts). */
export type BusinessErrorCode =
  | 'insufficient_credits'
  | 'idempotency_conflict'
  | 'customer_not_found'
  | 'account_not_found'
  | 'invalid_posting'
  | 'verification_closed'
  | 'stripe_request_refused'
  | 'payment_not_found'
  /** The database refused the data itself (bad text, a missing reference, a broken check). */
  | 'invalid_data'
  /** A posting would take a balance beyond what the ledger can hold (PostgreSQL bigint). */
  | 'balance_out_of_range'
  /** A grant that cannot exist (category, priority, dates). */
  | 'invalid_grant'
  | 'grant_not_found'
  /** Expiry asked of a grant with no expiry date. */
  | 'grant_does_not_expire';

/** A refusal that retrying cannot fix; activities turn it into a non-retryable failure. */
export class BusinessError extends Error {
  constructor(
    readonly code: BusinessErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'BusinessError';
  }
}

export function isBusinessError(err: unknown): err is BusinessError {
  return err instanceof BusinessError;
}
