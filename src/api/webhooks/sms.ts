// POST /webhooks/sms: the SMS provider delivers a code. Signed with HMAC-SHA256 over the raw body.
import { Hono } from 'hono';
import { WorkflowNotFoundError } from '@temporalio/client';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { codeReceivedSignal, workflowIds } from '../../shared.js';
import type { AppDeps } from '../common.js';
import { ApiError, describeZodError } from '../errors.js';

const CodeSchema = z
  .object({
    verificationId: z.string().min(1).max(100).optional(),
    providerRef: z.string().min(1).max(200).optional(),
    code: z.string().trim().min(1).max(32),
  })
  .refine((v) => v.verificationId || v.providerRef, {
    message: 'verificationId or providerRef is required',
  });

/** True when `header` is `sha256=<hex HMAC-SHA256 of body with secret>`. */
export function validSignature(secret: string, body: string, header: string | undefined): boolean {
  const match = /^sha256=([0-9a-f]{64})$/i.exec(header ?? '');
  if (!match) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(match[1]!, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function signSmsBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
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
    if (!validSignature(smsWebhookSecret, raw, c.req.header('x-signature'))) {
      throw new ApiError(
        401,
        'invalid_signature',
        'X-Signature is missing or does not match the body.',
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
