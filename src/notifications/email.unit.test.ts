// The e-mail channel's pure parts: the Message-ID, the rendered e-mail, the preference rule, and
// the SMTP_URL / MAIL_FROM settings.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../config.js';
import { addressDomain, describeSmtpUrl, outboxMessageId, renderEmail } from './email.js';
import {
  DEFAULT_PREFERENCES,
  effectiveChannels,
  wants,
  type NotificationPreferences,
} from './preferences.js';

const payload = {
  title: 'Credits refunded',
  body: '50 credits are back. Balance: 100.',
  amount: '50',
  balanceAfter: '100',
  data: {},
};

describe('notification e-mails', () => {
  it('derive one Message-ID from the outbox row: stable across attempts, distinct across rows and databases', () => {
    const row = { id: 42, idempotencyKey: 'verification-abc:notify-refund' };
    const id = outboxMessageId(row, 'example.com');
    expect(id).toMatch(/^<outbox-42\.[0-9a-f]{16}@example\.com>$/);
    expect(outboxMessageId({ ...row }, 'example.com')).toBe(id);
    // Row 42 of another database holds another message: another id.
    expect(outboxMessageId({ ...row, idempotencyKey: 'other' }, 'example.com')).not.toBe(id);
    expect(outboxMessageId({ ...row, id: 43 }, 'example.com')).not.toBe(id);
  });

  it('take the subject from the title and the text from the body', () => {
    const mail = renderEmail({ id: 1, idempotencyKey: 'k', payload }, 'a@example.test', 'x.test');
    expect(mail).toMatchObject({ to: 'a@example.test', subject: 'Credits refunded' });
    expect(mail.text.startsWith(`${payload.body}\n`)).toBe(true);
    expect(mail.messageId).toMatch(/@x\.test>$/);
  });

  it('read the domain from MAIL_FROM, and never show SMTP credentials', () => {
    expect(addressDomain('creditflow <no-reply@Example.COM>')).toBe('example.com');
    expect(addressDomain('no-reply@mail.example.com')).toBe('mail.example.com');
    expect(describeSmtpUrl('smtps://user:secret@smtp.example.com:465')).toBe(
      'smtps://smtp.example.com:465',
    );
  });
});

describe('notification preferences', () => {
  const p: NotificationPreferences = {
    kinds: ['credits_refunded', 'credits_added'],
    minAmount: 100n,
    channels: { credits_added: ['in_app'] },
  };

  it('send every kind on every channel by default', () => {
    expect(wants(DEFAULT_PREFERENCES, 'email', { kind: 'low_balance' })).toBe(true);
    expect(effectiveChannels(DEFAULT_PREFERENCES).credits_expired).toEqual(['in_app', 'email']);
  });

  it('apply kinds and the minimum to every channel, and the channels per kind', () => {
    expect(wants(p, 'email', { kind: 'credits_refunded', amount: -100 })).toBe(true);
    expect(wants(p, 'email', { kind: 'credits_refunded', amount: 99 })).toBe(false);
    expect(wants(p, 'in_app', { kind: 'credits_refunded', amount: '99' })).toBe(false);
    expect(wants(p, 'email', { kind: 'credits_deducted', amount: 500 })).toBe(false);
    expect(wants(p, 'email', { kind: 'credits_added', amount: 500 })).toBe(false);
    expect(wants(p, 'in_app', { kind: 'credits_added', amount: 500 })).toBe(true);
  });
});

describe('e-mail settings', () => {
  it('are off without SMTP_URL, with a default sender', () => {
    expect(loadConfig({}).mail).toEqual({
      smtpUrl: undefined,
      from: 'creditflow <no-reply@creditflow.localhost>',
    });
    expect(loadConfig({ SMTP_URL: ' ' }).mail.smtpUrl).toBeUndefined();
  });

  it('take an smtp:// or smtps:// URL and an address, and name a bad one', () => {
    expect(
      loadConfig({ SMTP_URL: 'smtps://u:p@mail.example.com:465', MAIL_FROM: 'a@example.com' }).mail,
    ).toEqual({ smtpUrl: 'smtps://u:p@mail.example.com:465', from: 'a@example.com' });
    for (const env of [
      { SMTP_URL: 'http://mail.example.com' },
      { SMTP_URL: 'mail.example.com:25' },
      { MAIL_FROM: 'not an address' },
    ]) {
      const variable = Object.keys(env)[0]!;
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow(new RegExp(`${variable}: must be`));
    }
  });
});
