// Which PostgreSQL errors no retry can fix, so activities stop retrying and compensate instead.
import { BusinessError } from '../errors.js';

/**
 * SQLSTATEs that mean "this statement, with these values, will fail every time": bad text or
 * encoding, a value out of range, a broken foreign key, check or not-null constraint.
 * Deadlocks, serialization failures, lost connections and unique violations (a concurrent
 * writer won a race) are not here: those are worth retrying.
 */
const PERMANENT_SQLSTATES: Record<string, string> = {
  '22001': 'a value is too long for its column',
  '22003': 'a number is out of range',
  '22007': 'a date or time is malformed',
  '22008': 'a date or time is out of range',
  '22012': 'division by zero',
  '22021': 'text contains a byte sequence that is not valid in the database encoding',
  '22023': 'a parameter value is invalid',
  '22P02': 'a value does not have the expected form',
  '22P05': 'text contains a character that cannot be stored',
  '23502': 'a required value is missing',
  '23503': 'a referenced row does not exist',
  '23514': 'a value breaks a check constraint',
};

/** The SQLSTATE of a postgres.js error (also when drizzle wrapped it as `cause`). */
export function sqlState(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** What a permanent database error means, in words; undefined for any other error. */
export function permanentDbErrorReason(err: unknown): string | undefined {
  const code = sqlState(err);
  return code === undefined ? undefined : PERMANENT_SQLSTATES[code];
}

/** True for database errors that fail the same way on every retry. */
export function isPermanentDbError(err: unknown): boolean {
  const code = sqlState(err);
  return code !== undefined && code in PERMANENT_SQLSTATES;
}

/**
 * Turns a permanent database error into a non-retryable business refusal (`invalid_data`),
 * keeping the SQLSTATE and constraint for operators; any other error comes back unchanged.
 */
export function toBusinessErrorIfPermanent(err: unknown, context: Record<string, unknown> = {}) {
  if (err instanceof BusinessError || !isPermanentDbError(err)) return err;
  const code = sqlState(err)!;
  const pg = findPgError(err);
  return new BusinessError(
    'invalid_data',
    `the database refused the data: ${PERMANENT_SQLSTATES[code]} (${pg?.message ?? code})`,
    {
      ...context,
      sqlState: code,
      ...(pg?.constraint_name ? { constraint: pg.constraint_name } : {}),
      ...(pg?.table_name ? { table: pg.table_name } : {}),
      ...(pg?.column_name ? { column: pg.column_name } : {}),
    },
  );
}

interface PgErrorFields {
  message: string;
  constraint_name?: string;
  table_name?: string;
  column_name?: string;
}

function findPgError(err: unknown): PgErrorFields | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    if (typeof (e as { code?: unknown }).code === 'string') return e as PgErrorFields;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
