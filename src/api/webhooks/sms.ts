// POST /webhooks/sms: the SMS provider delivers a code. Signed with HMAC-SHA256 over a timestamp
// and the raw body, so a captured request cannot be replayed later.
import { Hono } from 'hono';
import { WorkflowNotFoundError } from '@temporalio/client';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { codeReceivedSignal, workflowIds } from '../../shared.js';
import { plainText, type AppDeps } from '../common.js';
import { ApiError, describeZodError } from '../errors.js';

const CodeSchema = z
  .object({
    verificationId: plainText({ max: 100 }).optional(),
    providerRef: plainText({ max: 200 }).optional(),
    code: plainText({ max: 32 }),
  })
  .refine((v) => v.verificationId || v.providerRef, {
    message: 'verificationId or providerRef is required',
  });

/** How far a signature's timestamp may be from our clock, either way, in seconds. */
export const SMS_SIGNATURE_TOLERANCE_SECONDS = 300;

const hmac = (secret: string, timestamp: number, body: string) =>
  createHmac('sha256', secret).update(`${timestamp}.${body}`).digest();

/**
 * Checks `X-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>.<body>">`. `invalid`
 * when the HMAC does not match, `stale` when it does but `t` is outside the tolerance.
 */
export function checkSmsSignature(
  secret: string,
  body: string,
  header: string | undefined,
  now = Math.floor(Date.now() / 1000),
): 'valid' | 'invalid' | 'stale' {
  const match = /^t=(\d{1,12}),sha256=([0-9a-f]{64})$/i.exec(header ?? '');
  if (!match) return 'invalid';
  const timestamp = Number(match[1]);
  const expected = hmac(secret, timestamp, body);
  const given = Buffer.from(match[2]!, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
  return Math.abs(now - timestamp) > SMS_SIGNATURE_TOLERANCE_SECONDS ? 'stale' : 'valid';
}

/** The X-Signature header for a body, as the provider computes it (scripts and tests use it). */
export function signSmsBody(
  secret: string,
  body: string,
  timestamp = Math.floor(Date.now() / 1000),
): string {
  return `t=${timestamp},sha256=${hmac(secret, timestamp, body).toString('hex')}`;
}

export function smsWebhookRoutes({ db, temporal, logger, smsWebhookSecret }: AppDeps) {
  const app = new Hono();

  /** Delivers the code to the verification's workflow; 5xx when it could not, so the provider retries. */
  app.post('/webhooks/sms', async (c) => {
    if (!smsWebhookSecret) {
      throw new ApiError(
        503,
        'not_configured',
        'SMS webhooks are not configured (SMS_WEBHOOK_SECRET).',
      );
    }
    const raw = await c.req.text();
    const signature = checkSmsSignature(smsWebhookSecret, raw, c.req.header('x-signature'));
    if (signature === 'invalid') {
      throw new ApiError(
        401,
        'invalid_signature',
        'X-Signature is missing or does not match the body: send "t=<unix seconds>,sha256=<hex HMAC-SHA256 of \'<t>.<body>\'>".',
      );
    }
    if (signature === 'stale') {
      throw new ApiError(
        401,
        'stale_signature',
        `X-Signature's timestamp is more than ${SMS_SIGNATURE_TOLERANCE_SECONDS} s from our clock; sign the request when you send it.`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new ApiError(400, 'malformed_json', 'The body is not valid JSON.');
    }
    const body = CodeSchema.safeParse(parsed);
    if (!body.success) throw new ApiError(400, 'invalid_request', describeZodError(body.error));
    const { verificationId, providerRef, code } = body.data;

    const [row] = await db.sql<{ id: string; status: string }[]>`
      select id, status from verifications
      where ${verificationId ? db.sql`id = ${verificationId}` : db.sql`provider_ref = ${providerRef!}`}`;
    if (!row)
      throw new ApiError(404, 'verification_not_found', 'No verification matches this code.');
    try {
      await temporal.workflow
        .getHandle(workflowIds.verification(row.id))
        .signal(codeReceivedSignal, { code });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        // Closed: a retry cannot change anything, so the provider should stop retrying.
        return c.json({ delivered: false, status: row.status }, 200);
      }
      logger.error({ err, verificationId: row.id }, 'could not deliver an SMS code');
      throw new ApiError(
        503,
        'delivery_failed',
        'The code could not be delivered now; retry later.',
      );
    }
    logger.info({ verificationId: row.id }, 'SMS code delivered');
    return c.json({ delivered: true }, 200);
  });

  return app;
}
