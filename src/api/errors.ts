// One place that turns every failure into `{ error: { code, message } }` with the right status.
import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';
import { BusinessError, type BusinessErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  isTemporalUnavailable,
  TEMPORAL_RETRY_AFTER_SECONDS,
  TEMPORAL_UNAVAILABLE_MESSAGE,
} from '../readiness/temporal-availability.js';

/** A refusal the API raises itself (bad input, auth, not found). */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    /** Sent with the refusal, e.g. Retry-After on a 503. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const businessStatus: Record<BusinessErrorCode, ContentfulStatusCode> = {
  insufficient_credits: 422,
  idempotency_conflict: 409,
  customer_not_found: 404,
  account_not_found: 404,
  invalid_posting: 400,
  verification_closed: 409,
  stripe_request_refused: 502,
  payment_not_found: 404,
  invalid_data: 422,
  balance_out_of_range: 422,
  invalid_grant: 400,
  grant_not_found: 404,
  grant_does_not_expire: 409,
};

export function statusForCode(code: string): ContentfulStatusCode {
  return businessStatus[code as BusinessErrorCode] ?? 422;
}

export function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

/** Formats zod issues as "field: problem; field: problem". */
export function describeZodError(error: ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.join('.');
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join('; ');
}

/** The validation hook every route uses: a 400 that names each bad field, nothing else runs. */
export function validationHook(
  result: { success: true } | { success: false; error: ZodError },
  c: Context,
) {
  if (!result.success) {
    return c.json(errorBody('invalid_request', describeZodError(result.error)), 400);
  }
  return undefined;
}

export function handleError(logger: Logger) {
  return (err: Error, c: Context) => {
    if (err instanceof ApiError) {
      for (const [name, value] of Object.entries(err.headers)) c.header(name, value);
      return c.json(errorBody(err.code, err.message), err.status);
    }
    if (err instanceof BusinessError) {
      return c.json(errorBody(err.code, err.message), statusForCode(err.code));
    }
    if (
      err instanceof WorkflowFailedError &&
      err.cause instanceof ApplicationFailure &&
      err.cause.type
    ) {
      return c.json(errorBody(err.cause.type, err.cause.message), statusForCode(err.cause.type));
    }
    if (err instanceof HTTPException) {
      if (err.status === 400) {
        return c.json(
          errorBody('malformed_json', `The request body is not valid JSON: ${err.message}`),
          400,
        );
      }
      return c.json(errorBody('http_error', err.message), err.status as ContentfulStatusCode);
    }
    if (isTemporalUnavailable(err)) {
      // Temporal down or past a deadline: a retry may well succeed, so not a 500.
      logger.warn({ err, method: c.req.method, path: c.req.path }, 'temporal unavailable');
      c.header('Retry-After', String(TEMPORAL_RETRY_AFTER_SECONDS));
      return c.json(errorBody('temporal_unavailable', TEMPORAL_UNAVAILABLE_MESSAGE), 503);
    }
    logger.error({ err, method: c.req.method, path: c.req.path }, 'unhandled error');
    return c.json(
      errorBody(
        'internal_error',
        'Something went wrong on our side; it has been logged. Try again.',
      ),
      500,
    );
  };
}
