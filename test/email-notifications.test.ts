// E-mail notifications end to end over real SMTP (the run's mailpit): a refunded verification is
// e-mailed to the customer with the outbox row's Message-ID; a failing SMTP server is retried
// without repeating the in-app notice and yields exactly one e-mail; preferences (channels, kinds,
// minimum amount) hold on the e-mail channel; neither e-mails nor logs carry secrets or addresses.
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import {
  createOutboxDispatcher,
  deliverToInbox,
  type DeliverMessage,
} from '../src/notifications/dispatcher.js';
import {
  createSmtpSender,
  outboxMessageId,
  type EmailMessage,
  type EmailSender,
} from '../src/notifications/email.js';
import { enqueueMessage, type OutboxMessage } from '../src/notifications/outbox.js';
import { freePort } from '../src/stack/ports.js';
import {
  JWT_SECRET,
  SMS_SECRET,
  createCustomer,
  customerToken,
  deliveredNotifications,
  eventually,
  fund,
  jsonRequest,
  spawnWorkerProcess,
  testApp,
  testOutboxSettings,
  uniqueId,
} from './helpers.js';
import { mailDetail, mailTo, rawMail, waitForMail } from './mailpit.js';
import { verificationHarness, type VerificationHarness } from './verification-harness.js';

const FROM = 'creditflow <notifications@creditflow.test>';
const DOMAIN = 'creditflow.test';

let h: VerificationHarness;
let smtp: EmailSender;
let db: Database;

beforeAll(async () => {
  smtp = createSmtpSender({ smtpUrl: inject('mailpitSmtpUrl'), from: FROM });
  h = await verificationHarness('email', { outbox: { email: { sender: smtp, from: FROM } } });
  db = h.db;
});

afterAll(async () => {
  smtp.close();
  await h.close();
});

/** A customer with an address of their own, so mailpit searches see only this test's mail. */
const customerWithAddress = () =>
  createCustomer(db, { email: `mail-${randomUUID()}@example.test` });

interface OutboxChannels {
  id: string;
  idempotency_key: string;
  kind: string;
  status: string;
  attempts: number;
  in_app_status: string | null;
  email_status: string | null;
  email_sent_at: Date | null;
  last_error: string | null;
}

async function outboxOf(customerId: string) {
  return db.sql<OutboxChannels[]>`
    select id, idempotency_key, kind, status, attempts, in_app_status, email_status,
           email_sent_at, last_error
    from notification_outbox where customer_id = ${customerId} order by id`;
}

/** A dispatcher of the test's own, on its own task queue, run by hand with runOnce. */
function dispatcherFor(
  taskQueue: string,
  options: { sender?: EmailSender; deliver?: DeliverMessage; logLines?: string[] } = {},
) {
  const lines = options.logLines ?? [];
  // A logger without redaction: what the dispatcher hands it must already be free of addresses.
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  return createOutboxDispatcher({
    sql: db.sql,
    taskQueue,
    logger,
    settings: { ...testOutboxSettings, retryInitialMs: 10, retryMaxMs: 10 },
    deliver: options.deliver,
    email: { sender: options.sender ?? smtp, from: FROM },
  });
}

async function enqueue(taskQueue: string, customerId: string, overrides: Partial<OutboxMessage>) {
  const message: OutboxMessage = {
    idempotencyKey: uniqueId('email-test'),
    customerId,
    kind: 'credits_added',
    title: 'Credits added',
    body: '150 credits from your small pack are in your wallet.',
    amount: 150,
    balanceAfter: 150,
    ...overrides,
  };
  await db.sql.begin((tx) => enqueueMessage(tx, { taskQueue }, message));
  return message;
}

async function putPreferences(customerId: string, body: Record<string, unknown>) {
  return h.app.request(
    '/v1/notifications/preferences',
    jsonRequest('PUT', body, await customerToken(customerId)),
  );
}

async function getPreferences(customerId: string) {
  const res = await h.app.request('/v1/notifications/preferences', {
    headers: { authorization: `Bearer ${await customerToken(customerId)}` },
  });
  return (await res.json()) as {
    kinds: string[] | null;
    minAmount: number;
    channels: Record<string, string[]>;
  };
}

describe('e-mail notifications', () => {
  it('e-mails a timed-out verification’s debit and refund to the customer, once each, with the outbox Message-ID', async () => {
    const customer = await customerWithAddress();
    await fund(h.ledger, customer.id, 100);
    const res = await h.buy(customer.id, { timeoutSeconds: 1 });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect((await h.waitFor(customer.id, id, ['refunded'])).refundReason).toBe('timeout');

    const mail = await waitForMail(customer.email, 2);
    const rows = await eventually(async () => {
      const found = await outboxOf(customer.id);
      return found.length === 2 && found.every((r) => r.status === 'delivered') ? found : undefined;
    });
    expect(rows.map((r) => [r.kind, r.in_app_status, r.email_status])).toEqual([
      ['credits_deducted', 'sent', 'sent'],
      ['credits_refunded', 'sent', 'sent'],
    ]);
    expect(rows.every((r) => r.email_sent_at !== null)).toBe(true);

    const refundRow = rows[1]!;
    const refundMail = mail.find((m) => m.Subject === 'Credits refunded');
    expect(refundMail).toBeDefined();
    expect(`<${refundMail!.MessageID}>`).toBe(
      outboxMessageId(
        { id: Number(refundRow.id), idempotencyKey: refundRow.idempotency_key },
        DOMAIN,
      ),
    );
    expect(refundMail!.MessageID).toMatch(new RegExp(`^outbox-${refundRow.id}\\.[0-9a-f]{16}@`));
    expect(refundMail!.To.map((t) => t.Address)).toEqual([customer.email]);
    expect(refundMail!.From.Address).toBe('notifications@creditflow.test');
    const detail = await mailDetail(refundMail!.ID);
    expect(detail.Text).toContain(
      `50 credits are back: your ${h.service} verification (US) timed out before a code arrived. Balance: 100.`,
    );
    expect(mail.map((m) => m.Subject).sort()).toEqual(['Credits refunded', 'Credits used']);
    // The in-app list has the same two notices.
    expect((await deliveredNotifications(db, customer.id)).map((n) => n.kind)).toEqual([
      'credits_deducted',
      'credits_refunded',
    ]);

    // Nothing secret travels: not the signing secrets, not a token, not the wallet's internals.
    const token = await customerToken(customer.id);
    for (const m of mail) {
      const raw = await rawMail(m.ID);
      expect(raw).toContain('Auto-Submitted: auto-generated');
      for (const secret of [JWT_SECRET, SMS_SECRET, token, 'Bearer', 'sk_test', 'whsec_']) {
        expect(raw).not.toContain(secret);
      }
    }
  });

  it('retries a failing SMTP server without repeating the in-app notice, and sends exactly one e-mail', async () => {
    const taskQueue = uniqueId('email-retry');
    const customer = await customerWithAddress();
    // First a real refused connection, then a rejection that quotes the recipient, then the
    // working server.
    const closed = createSmtpSender({
      smtpUrl: `smtp://127.0.0.1:${await freePort(0)}`,
      from: FROM,
    });
    const attempts: string[] = [];
    const flaky: EmailSender = {
      target: 'flaky',
      async send(message: EmailMessage) {
        attempts.push(message.messageId);
        if (attempts.length === 1) return closed.send(message);
        if (attempts.length === 2) {
          throw new Error(`550 5.1.1 <${message.to}>: Recipient address rejected: try later`);
        }
        return smtp.send(message);
      },
      close: () => undefined,
    };
    let inAppDeliveries = 0;
    const logLines: string[] = [];
    const dispatcher = dispatcherFor(taskQueue, {
      sender: flaky,
      logLines,
      deliver: (tx, row) => {
        inAppDeliveries++;
        return deliverToInbox(tx, row);
      },
    });
    await enqueue(taskQueue, customer.id, {});

    expect(await dispatcher.runOnce()).toBe(1);
    const [afterRefused] = await outboxOf(customer.id);
    expect(afterRefused).toMatchObject({
      status: 'pending',
      attempts: 1,
      in_app_status: 'sent',
      email_status: null,
    });
    expect(afterRefused!.last_error).toMatch(/^e-mail: .*ECONNREFUSED/);

    const afterRejected = await eventually(async () => {
      await dispatcher.runOnce();
      const [row] = await outboxOf(customer.id);
      return row!.attempts >= 2 ? row : undefined;
    });
    expect(afterRejected).toMatchObject({ status: 'pending', in_app_status: 'sent' });
    expect(afterRejected.last_error).toContain('Recipient address rejected');
    expect(afterRejected.last_error).not.toContain(customer.email);

    const delivered = await eventually(async () => {
      await dispatcher.runOnce();
      const [row] = await outboxOf(customer.id);
      return row!.status === 'delivered' ? row : undefined;
    });
    expect(delivered).toMatchObject({ attempts: 3, email_status: 'sent', last_error: null });
    expect(await dispatcher.runOnce()).toBe(0);

    const mail = await waitForMail(customer.email);
    expect(mail).toHaveLength(1);
    expect(`<${mail[0]!.MessageID}>`).toBe(attempts[2]);
    // The same Message-ID on every attempt: it belongs to the row, not to the attempt.
    expect(new Set(attempts).size).toBe(1);
    expect(inAppDeliveries).toBe(1);
    expect(await deliveredNotifications(db, customer.id)).toHaveLength(1);
    // The failures were logged, without the address.
    expect(logLines.some((l) => l.includes('Recipient address rejected'))).toBe(true);
    expect(logLines.filter((l) => l.includes(customer.email))).toEqual([]);
    closed.close();
  });

  it('keeps e-mail off for a kind whose channels leave it out, and still delivers in-app', async () => {
    const taskQueue = uniqueId('email-channels');
    const customer = await customerWithAddress();
    const put = await putPreferences(customer.id, {
      kinds: null,
      minAmount: 0,
      channels: { credits_added: ['in_app'], credits_refunded: ['email'] },
    });
    expect(put.status).toBe(200);
    const dispatcher = dispatcherFor(taskQueue);
    await enqueue(taskQueue, customer.id, { kind: 'credits_added', title: 'Credits added' });
    await enqueue(taskQueue, customer.id, {
      kind: 'credits_refunded',
      title: 'Credits refunded',
      body: '150 credits are back.',
    });
    expect(await dispatcher.runOnce()).toBe(2);

    expect(
      (await outboxOf(customer.id)).map((r) => [r.kind, r.in_app_status, r.email_status]),
    ).toEqual([
      ['credits_added', 'sent', 'muted'],
      ['credits_refunded', 'muted', 'sent'],
    ]);
    expect((await deliveredNotifications(db, customer.id)).map((n) => n.kind)).toEqual([
      'credits_added',
    ]);
    // Both rows are settled, so mailpit already has all the mail there will be.
    expect((await waitForMail(customer.email)).map((m) => m.Subject)).toEqual(['Credits refunded']);
  });

  it('respects the minimum amount and the kinds on the e-mail channel', async () => {
    const taskQueue = uniqueId('email-minimum');
    const customer = await customerWithAddress();
    expect(
      (await putPreferences(customer.id, { kinds: ['credits_added'], minAmount: 100 })).status,
    ).toBe(200);
    const dispatcher = dispatcherFor(taskQueue);
    await enqueue(taskQueue, customer.id, { amount: 99, title: 'Small top-up' });
    await enqueue(taskQueue, customer.id, { kind: 'credits_deducted', title: 'Muted kind' });
    await enqueue(taskQueue, customer.id, { amount: -150, title: 'Large enough' });
    expect(await dispatcher.runOnce()).toBe(3);
    expect((await outboxOf(customer.id)).map((r) => [r.status, r.email_status])).toEqual([
      ['muted', 'muted'],
      ['muted', 'muted'],
      ['delivered', 'sent'],
    ]);
    expect((await waitForMail(customer.email)).map((m) => m.Subject)).toEqual(['Large enough']);
  });

  it('sends nothing to a customer without an address, and nothing while the channel is off', async () => {
    const taskQueue = uniqueId('email-none');
    const anonymous = await customerWithAddress();
    await db.sql`update customers set email = null where id = ${anonymous.id}`;
    const withAddress = await customerWithAddress();
    await enqueue(taskQueue, anonymous.id, {});
    expect(await dispatcherFor(taskQueue).runOnce()).toBe(1);
    expect((await outboxOf(anonymous.id)).map((r) => [r.status, r.email_status])).toEqual([
      ['delivered', 'no_address'],
    ]);

    // A dispatcher without SMTP (no SMTP_URL): in-app only, the e-mail recorded as off.
    await enqueue(taskQueue, withAddress.id, {});
    const off = createOutboxDispatcher({
      sql: db.sql,
      taskQueue,
      logger: pino({ level: 'silent' }),
      settings: testOutboxSettings,
    });
    expect(await off.runOnce()).toBe(1);
    expect(
      (await outboxOf(withAddress.id)).map((r) => [r.status, r.in_app_status, r.email_status]),
    ).toEqual([['delivered', 'sent', 'off']]);
    expect(await mailTo(withAddress.email)).toEqual([]);
  });
});

describe('the worker process', () => {
  it('e-mails through SMTP_URL, says so at start, and logs neither the credentials nor the address', async () => {
    const taskQueue = uniqueId('email-worker');
    const service = `email-worker-${randomUUID().slice(0, 8)}`;
    await db.sql`insert into prices (service, country, price) values (${service}, 'US', 30)`;
    const customer = await customerWithAddress();
    await fund(h.ledger, customer.id, 100);
    const smtpUrl = new URL(inject('mailpitSmtpUrl'));
    smtpUrl.username = 'creditflow';
    smtpUrl.password = 'smtp-password-never-logged';
    const worker = await spawnWorkerProcess(taskQueue, {
      SMTP_URL: smtpUrl.toString(),
      MAIL_FROM: FROM,
      LOG_LEVEL: 'info',
    });
    try {
      const app = testApp(db, h.temporal, taskQueue);
      const res = await app.request(
        '/v1/verifications',
        jsonRequest(
          'POST',
          { service, country: 'US', timeoutSeconds: 1 },
          await customerToken(customer.id),
        ),
      );
      expect(res.status).toBe(202);
      const mail = await waitForMail(customer.email, 2);
      expect(mail.map((m) => m.Subject).sort()).toEqual(['Credits refunded', 'Credits used']);
      expect(mail.every((m) => m.MessageID.endsWith('@creditflow.test'))).toBe(true);
    } finally {
      await worker.stop();
    }
    const output = worker.output.join('');
    expect(output).toContain('e-mail notifications on');
    expect(output).toContain(`smtp://${smtpUrl.host}`);
    expect(output).not.toContain('smtp-password-never-logged');
    expect(output).not.toContain(customer.email);
  });
});

describe('notification preferences with channels', () => {
  it('keeps the old body working, stores channels, and refuses bad ones with nothing written', async () => {
    const customer = await customerWithAddress();
    const everyChannel = ['in_app', 'email'];
    expect((await getPreferences(customer.id)).channels.credits_refunded).toEqual(everyChannel);

    const saved = await putPreferences(customer.id, {
      kinds: null,
      minAmount: 5,
      channels: { credits_deducted: ['in_app'], low_balance: [] },
    });
    expect(saved.status).toBe(200);
    const body = (await saved.json()) as Awaited<ReturnType<typeof getPreferences>>;
    expect(body).toMatchObject({ kinds: null, minAmount: 5 });
    expect(body.channels).toMatchObject({
      credits_deducted: ['in_app'],
      low_balance: [],
      credits_refunded: everyChannel,
    });

    // A body of the old shape replaces kinds and minimum and leaves the channels as they are.
    expect(
      (await putPreferences(customer.id, { kinds: ['credits_deducted'], minAmount: 7 })).status,
    ).toBe(200);
    const old = await getPreferences(customer.id);
    expect(old).toMatchObject({ kinds: ['credits_deducted'], minAmount: 7 });
    expect(old.channels.credits_deducted).toEqual(['in_app']);

    for (const bad of [
      { kinds: null, minAmount: 1, channels: { credits_deducted: ['sms'] } },
      { kinds: null, minAmount: 1, channels: { spam: ['email'] } },
      { kinds: null, minAmount: 1, channels: { credits_deducted: ['email', 'email'] } },
      { kinds: null, minAmount: 1, channels: ['email'] },
      { kinds: null, minAmount: 1, email: 'someone@example.test' },
    ]) {
      const res = await putPreferences(customer.id, bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
      const error = ((await res.json()) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('invalid_request');
      expect(error.message.length).toBeGreaterThan(0);
    }
    expect(await getPreferences(customer.id)).toEqual(old);

    // null: every kind on every channel again.
    expect(
      (await putPreferences(customer.id, { kinds: null, minAmount: 0, channels: null })).status,
    ).toBe(200);
    expect((await getPreferences(customer.id)).channels.credits_deducted).toEqual(everyChannel);
  });

  it('documents the channels in the OpenAPI description', async () => {
    const spec = (await (await h.app.request('/openapi.json')).json()) as {
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    expect(
      Object.keys(spec.components.schemas.NotificationPreferencesInput?.properties ?? {}),
    ).toEqual(['kinds', 'minAmount', 'channels']);
    expect(
      Object.keys(spec.components.schemas.NotificationPreferences?.properties ?? {}),
    ).toContain('channels');
  });
});
