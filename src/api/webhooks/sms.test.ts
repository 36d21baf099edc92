// POST /webhooks/sms: the signature covers a timestamp, so a captured request cannot be replayed
// later, and a code with control characters is refused before it reaches a workflow.
import { describe, expect, it } from 'vitest';
import { SMS_SECRET, uniqueId, useTestApp } from '../../../test/helpers.js';
import { SMS_SIGNATURE_TOLERANCE_SECONDS, signSmsBody } from './sms.js';
import { createHmac } from 'node:crypto';

const t = useTestApp('sms-webhook');

const now = () => Math.floor(Date.now() / 1000);

function deliver(body: string, signature: string | undefined) {
  return t.app.request('/webhooks/sms', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(signature === undefined ? {} : { 'x-signature': signature }),
    },
    body,
  });
}

/** A code for a verification nobody has: a valid signature gets as far as the 404. */
const unknownCode = () => JSON.stringify({ verificationId: uniqueId('ver'), code: '123456' });

describe('POST /webhooks/sms signature', () => {
  it('accepts a fresh signature (the request reaches the lookup)', async () => {
    const body = unknownCode();
    const res = await deliver(body, signSmsBody(SMS_SECRET, body));
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'verification_not_found' } });
  });

  it.each([
    ['captured and replayed later', -(SMS_SIGNATURE_TOLERANCE_SECONDS + 60)],
    ['dated in the future', SMS_SIGNATURE_TOLERANCE_SECONDS + 60],
  ])('refuses a correctly signed request %s with 401', async (_label, offset) => {
    const body = unknownCode();
    const res = await deliver(body, signSmsBody(SMS_SECRET, body, now() + offset));
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'stale_signature' } });
  });

  it('refuses the old body-only signature, which a replay could reuse forever', async () => {
    const body = unknownCode();
    const bodyOnly = `sha256=${createHmac('sha256', SMS_SECRET).update(body).digest('hex')}`;
    const res = await deliver(body, bodyOnly);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_signature' } });
  });

  it('refuses a fresh timestamp grafted onto an old signature', async () => {
    const body = unknownCode();
    const old = signSmsBody(SMS_SECRET, body, now() - 3600);
    const grafted = old.replace(/^t=\d+/, `t=${now()}`);
    const res = await deliver(body, grafted);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_signature' } });
  });

  it.each([
    ['no signature', undefined],
    ['another secret', signSmsBody('another-secret-of-some-length', unknownCode())],
    ['garbage', 't=abc,sha256=xyz'],
  ])('refuses %s with 401', async (_label, signature) => {
    const res = await deliver(unknownCode(), signature);
    expect(res.status).toBe(401);
  });
});

describe('POST /webhooks/sms body', () => {
  it.each([
    ['a NUL in the code', { verificationId: 'ver_1', code: '12\u000034' }],
    ['an escape in the code', { verificationId: 'ver_1', code: '\u001b[31m1234' }],
    ['a NUL in the provider reference', { providerRef: 'ref\u0000', code: '1234' }],
    ['a lone surrogate in the code', { verificationId: 'ver_1', code: '12\ud80034' }],
  ])('refuses %s with 400', async (_label, payload) => {
    const body = JSON.stringify(payload);
    const res = await deliver(body, signSmsBody(SMS_SECRET, body));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_request' } });
  });
});
