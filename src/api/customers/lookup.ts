// Finding a customer by any of the references people use: id, e-mail or external id.
import { eq, sql as dsql } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { customers } from '../../db/schema.js';
import { UUID_PATTERN, isPlaceholder, isPlainText } from '../common.js';
import { ApiError } from '../errors.js';

export type CustomerRow = typeof customers.$inferSelect;

/**
 * Checks a reference taken from a path and returns it trimmed: 400 for control characters, an
 * over-long value or a placeholder such as `<email>`.
 */
export function checkCustomerRef(raw: string): string {
  // The router has already decoded the path segment once; decoding again would turn `%25`
  // into a malformed escape and let `%2500` smuggle a NUL.
  const ref = raw.trim();
  if (ref.length > 254 || !isPlainText(ref)) {
    throw new ApiError(
      400,
      'invalid_reference',
      'The reference must be a customer id, e-mail or external id of at most 254 characters, without control characters.',
    );
  }
  if (isPlaceholder(ref)) {
    throw new ApiError(
      400,
      'invalid_reference',
      `"${ref}" is a placeholder or empty: pass a customer id, e-mail or external id.`,
    );
  }
  return ref;
}

/** Resolves a checked reference by UUID, e-mail (contains @) or external id, in that order. */
export async function findCustomerByRef(
  db: Database,
  ref: string,
): Promise<CustomerRow | undefined> {
  const where = UUID_PATTERN.test(ref)
    ? eq(customers.id, ref)
    : ref.includes('@')
      ? eq(dsql`lower(${customers.email})`, ref.toLowerCase())
      : eq(customers.externalId, ref);
  const [customer] = await db.db.select().from(customers).where(where).limit(1);
  return customer;
}
