// E-mail delivery: an outbox message rendered as a plain-text e-mail and handed to an SMTP server
// with nodemailer. The Message-ID comes from the outbox row, so a resend is recognisably the same.
import { createHash } from 'node:crypto';
import { createTransport } from 'nodemailer';
import type { OutboxRow } from './outbox.js';

export interface EmailMessage {
  to: string;
  subject: string;
  text: string;
  /** `<…@…>`, derived from the outbox row. */
  messageId: string;
}

/** Hands e-mails to a mail server; throws when the server did not accept one. */
export interface EmailSender {
  /** Where mail goes, for the startup log: scheme, host and port, never credentials. */
  readonly target: string;
  send(message: EmailMessage): Promise<void>;
  close(): void;
}

/** The domain of an address like `creditflow <no-reply@example.com>` or `no-reply@example.com`. */
export function addressDomain(from: string): string {
  const match = /@([^\s>]+)>?\s*$/.exec(from);
  return match ? match[1]!.toLowerCase() : 'creditflow';
}

/**
 * One Message-ID per outbox row: the row id to read, and a hash of its idempotency key so two
 * databases (staging and production, a restored copy) never give different mails the same id.
 */
export function outboxMessageId(
  row: Pick<OutboxRow, 'id' | 'idempotencyKey'>,
  domain: string,
): string {
  const digest = createHash('sha256').update(row.idempotencyKey).digest('hex').slice(0, 16);
  return `<outbox-${row.id}.${digest}@${domain}>`;
}

/** The e-mail for an outbox message: its title as the subject, its text, and why it came. */
export function renderEmail(
  row: Pick<OutboxRow, 'id' | 'idempotencyKey' | 'payload'>,
  to: string,
  domain: string,
): EmailMessage {
  return {
    to,
    subject: row.payload.title,
    text: [
      row.payload.body,
      '',
      '-- ',
      'You receive this e-mail because e-mail notifications are on in your creditflow',
      'notification preferences; change them there to receive fewer or none.',
      '',
    ].join('\n'),
    messageId: outboxMessageId(row, domain),
  };
}

/** `smtp://host:port` without user or password, for logs and startup lines. */
export function describeSmtpUrl(smtpUrl: string): string {
  const url = new URL(smtpUrl);
  return `${url.protocol}//${url.host}`;
}

/** An SMTP sender from a URL like `smtp://127.0.0.1:1025` or `smtps://user:pass@host:465`. */
export function createSmtpSender(options: { smtpUrl: string; from: string }): EmailSender {
  const transport = createTransport({
    url: options.smtpUrl,
    // Bounded, so a mail server that hangs delays one outbox row, not the dispatcher.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  });
  return {
    target: describeSmtpUrl(options.smtpUrl),
    async send(message) {
      await transport.sendMail({
        from: options.from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        messageId: message.messageId,
        headers: { 'Auto-Submitted': 'auto-generated' },
      });
    },
    close: () => transport.close(),
  };
}
