// Which database errors are permanent (stop retrying) and how they become business refusals.
import { describe, expect, it } from 'vitest';
import { isPermanentDbError, sqlState, toBusinessErrorIfPermanent } from '../../src/db/errors.js';
import { BusinessError } from '../../src/errors.js';

const pgError = (code: string, extra: Record<string, string> = {}) =>
  Object.assign(new Error(`pg ${code}`), { code, ...extra });

describe('permanent database errors', () => {
  it.each([
    ['22021', 'invalid byte sequence (a NUL in text)'],
    ['22P02', 'invalid text representation'],
    ['22P05', 'untranslatable character'],
    ['22001', 'string too long'],
    ['22003', 'numeric value out of range'],
    ['23502', 'not-null violation'],
    ['23503', 'foreign key violation'],
    ['23514', 'check violation'],
  ])('%s (%s) is permanent', (code) => {
    expect(isPermanentDbError(pgError(code))).toBe(true);
  });

  it.each([
    ['40P01', 'deadlock'],
    ['40001', 'serialization failure'],
    ['23505', 'unique violation: a concurrent writer won'],
    ['57014', 'statement timeout'],
    ['08006', 'connection failure'],
    ['ECONNRESET', 'a socket error'],
  ])('%s (%s) is worth retrying', (code) => {
    expect(isPermanentDbError(pgError(code))).toBe(false);
  });

  it('is false for errors that are not database errors at all', () => {
    expect(isPermanentDbError(new Error('boom'))).toBe(false);
    expect(isPermanentDbError(undefined)).toBe(false);
    expect(isPermanentDbError('23503')).toBe(false);
  });

  it('finds the SQLSTATE when drizzle wrapped the driver error', () => {
    const wrapped = Object.assign(new Error('Failed query'), { cause: pgError('23503') });
    expect(sqlState(wrapped)).toBe('23503');
    expect(isPermanentDbError(wrapped)).toBe(true);
  });

  it('converts a permanent error to a non-retryable invalid_data refusal with the details', () => {
    const err = toBusinessErrorIfPermanent(
      pgError('23503', {
        constraint_name: 'verifications_customer_id_fk',
        table_name: 'verifications',
      }),
      { workflowId: 'verification-1' },
    );
    expect(err).toBeInstanceOf(BusinessError);
    expect(err).toMatchObject({
      code: 'invalid_data',
      details: {
        workflowId: 'verification-1',
        sqlState: '23503',
        constraint: 'verifications_customer_id_fk',
        table: 'verifications',
      },
    });
    expect((err as Error).message).toMatch(/referenced row does not exist/);
  });

  it('returns other errors unchanged', () => {
    const deadlock = pgError('40P01');
    expect(toBusinessErrorIfPermanent(deadlock)).toBe(deadlock);
    const refusal = new BusinessError('insufficient_credits', 'no');
    expect(toBusinessErrorIfPermanent(refusal)).toBe(refusal);
  });
});
