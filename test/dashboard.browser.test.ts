// /dashboard end to end in a real Chromium: a customer signs in, watches the balance live, buys a
// verification, cancels it and sees the refund arrive, reads the history and the notice, and opens
// a top-up; an operator reads the monitor, follows a flow into the Temporal UI and checks the
// customer's books. A screenshot of each page is kept (see test/browser.ts for where).
import { serve, type ServerType } from '@hono/node-server';
import type { Client } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mintToken } from '../src/api/auth.js';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import { SimulatedSmsProvider } from '../src/sms/provider.js';
import { createStripeGateway } from '../src/stripe/gateway.js';
import { launchChromium, screenshotDir, type Chromium } from './browser.js';
import {
  JWT_SECRET,
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  fund,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
  type TestCustomer,
} from './helpers.js';
import { TEST_STRIPE_KEY } from './stripe.js';

const TEMPORAL_UI = 'http://temporal-ui.test:8233';
const PRICE = 40;
const START = 500;
/** How long the page may take to show what the stack did (a shared, busy machine). */
const SHOWN = { timeout: 30_000 };

let db: Database;
let temporal: Client;
let worker: Awaited<ReturnType<typeof startTestWorker>>;
let server: ServerType;
let base: string;
let browser: Chromium;
let customer: TestCustomer;
/** The verification the customer bought and cancelled, for the operator's checks. */
let verificationId: string;
const service = `dash-${randomBytes(4).toString('hex')}`;
const startedFlows: string[] = [];
/** What the pages did that they should not: console errors (CSP refusals among them), foreign requests. */
const problems: string[] = [];

beforeAll(async () => {
  // Started first: a missing Chromium fails here before the stack spends time starting.
  browser = await launchChromium();
  db = testDatabase();
  temporal = await connectTestClient();
  const taskQueue = uniqueId('dashboard');
  await db.sql`insert into prices (service, country, price) values (${service}, 'US', ${PRICE})`;
  const stripe = createStripeGateway({
    secretKey: TEST_STRIPE_KEY,
    apiBase: inject('stripeApiBase'),
    successUrl: 'https://example.test/success',
    cancelUrl: 'https://example.test/cancel',
  });
  worker = await startTestWorker(db, taskQueue, { sms: new SimulatedSmsProvider(), stripe });
  const app = testApp(db, temporal, taskQueue, { temporalUiUrl: TEMPORAL_UI });
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
      base = `http://127.0.0.1:${info.port}`;
      resolve(s);
    });
  });
  customer = await createCustomer(db);
  await fund(createLedger(db.sql), customer.id, START);
});

afterAll(async () => {
  await browser?.close();
  if (server) {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      if ('closeAllConnections' in server) server.closeAllConnections();
    });
  }
  // The top-up waits for a payment that never comes: end it rather than leave it running.
  for (const id of startedFlows) {
    await temporal?.workflow
      .getHandle(id)
      .terminate('test over')
      .catch(() => undefined);
  }
  await worker?.stop();
  if (db) await db.sql`delete from prices where service = ${service}`;
  await temporal?.connection.close();
  await db?.close();
});

/** A page of the dashboard that records console errors and requests to other origins. */
async function openDashboard(): Promise<Page> {
  const page = await browser.context.newPage();
  page.on('console', (message) => {
    // A refused API call is logged too; those are expected and shown in the page.
    const text = message.text();
    if (message.type() === 'error' && !text.startsWith('Failed to load resource')) {
      problems.push(`console: ${text}`);
    }
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.pathname.startsWith('/dashboard') && response.status() >= 400) {
      problems.push(`${response.status()} for ${url.pathname}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('request', (request) => {
    if (!request.url().startsWith(base)) problems.push(`foreign request: ${request.url()}`);
  });
  const res = await page.goto(`${base}/dashboard`);
  expect(res?.status()).toBe(200);
  return page;
}

async function signIn(page: Page, token: string) {
  await page.getByLabel('Bearer token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor(SHOWN);
}

const textOf = (locator: Locator) => locator.innerText();

async function screenshot(page: Page, name: string) {
  await page.screenshot({ path: join(screenshotDir(), `dashboard-${name}.png`), fullPage: true });
}

describe('/dashboard in Chromium', () => {
  it('serves the page under a CSP that allows only its own origin and no inline script', async () => {
    const res = await fetch(`${base}/dashboard`);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    expect(await res.text()).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
  });

  it('lets a customer watch the balance live, buy and cancel a verification, and start a top-up', async () => {
    const page = await openDashboard();

    // A pasted string that is not a token is refused with the reason.
    await page.getByLabel('Bearer token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => textOf(page.getByRole('alert')), SHOWN).toContain('invalid_token');
    await screenshot(page, 'signin');

    await signIn(page, await customerToken(customer.id));
    await expect.poll(() => textOf(page.locator('.whoami')), SHOWN).toContain(customer.email);
    const balance = page.getByLabel('Balance', { exact: true });
    await expect.poll(() => textOf(balance), SHOWN).toBe(String(START));
    await page.locator('.live.on').waitFor(SHOWN);

    // Buy a verification: the debit shows up over the event stream.
    await page.getByLabel('Service').selectOption(`${service}|US`);
    await page.getByRole('button', { name: 'Buy verification' }).click();
    await expect.poll(() => textOf(balance), SHOWN).toBe(String(START - PRICE));
    const cancel = page.getByRole('button', { name: /^Cancel verification ver_/ });
    await cancel.waitFor(SHOWN);
    verificationId = (await cancel.getAttribute('aria-label'))!.replace('Cancel verification ', '');
    startedFlows.push(`verification-${verificationId}`);

    // Cancel it: refunded, and the credits come back live.
    await cancel.click();
    const status = page.getByLabel(`Status of verification ${verificationId}`);
    await expect.poll(() => textOf(status), SHOWN).toBe('refunded (cancelled)');
    await expect.poll(() => textOf(balance), SHOWN).toBe(String(START));

    // History: purchase and refund with the balance after each; the kind filter narrows it.
    const history = page.getByRole('table', { name: 'Transactions, newest first' });
    await expect
      .poll(() => textOf(history), SHOWN)
      .toMatch(/Verification refund.*\+40\s+500[\s\S]*Verification purchase.*−40\s+460/);
    await page.getByLabel('Kind', { exact: true }).selectOption('verification_refund');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(() => history.locator('tbody tr').count(), SHOWN).toBe(1);
    expect(await textOf(history)).toContain('Verification refund');

    // The refund notice.
    const notifications = page.getByRole('list', { name: 'Notifications' });
    await expect.poll(() => textOf(notifications), SHOWN).toContain('Credits refunded');

    // A top-up: the Stripe Checkout link to pay at.
    await page.getByLabel('Credit pack').selectOption('small');
    await page.getByRole('button', { name: 'Buy credits' }).click();
    const pay = page.getByRole('link', { name: 'Pay at Stripe Checkout' });
    await pay.waitFor(SHOWN);
    expect(await pay.getAttribute('href')).toMatch(/^https:\/\//);
    const checkout = /Checkout (pay_\w+)/.exec(await textOf(page.locator('#buy-credits')));
    if (checkout) startedFlows.push(`checkout-${checkout[1]}`);

    await page.getByLabel('Kind', { exact: true }).selectOption('');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(() => history.locator('tbody tr').count(), SHOWN).toBe(3);
    await screenshot(page, 'customer');
    expect(problems).toEqual([]);
  });

  it('shows an operator the monitor with Temporal UI links and a customer consistency check', async () => {
    const page = await openDashboard();
    await signIn(page, await adminToken());

    // The monitor, narrowed to the customer: each entry linked to its workflow in the Temporal UI.
    const recent = page.getByRole('table', { name: 'Recent ledger entries' });
    await recent.waitFor(SHOWN);
    await page.getByLabel('Customer id').fill(customer.id);
    await page.getByRole('button', { name: 'Refresh monitor' }).click();
    await expect.poll(() => recent.locator('tbody tr').count(), SHOWN).toBe(3);
    const flow = `verification-${verificationId}`;
    const links = recent.getByRole('link', { name: `Open ${flow} in the Temporal UI` });
    expect(await links.count()).toBe(2); // the purchase and the refund
    const namespace = encodeURIComponent(temporal.options.namespace);
    expect(await links.first().getAttribute('href')).toBe(
      `${TEMPORAL_UI}/namespaces/${namespace}/workflows/${flow}`,
    );

    // An unknown customer is reported as the API says; the real one is consistent.
    const ref = page.getByLabel('Customer', { exact: true });
    await ref.fill('nobody@example.test');
    await page.getByRole('button', { name: 'Check consistency' }).click();
    const errors = page.locator('#consistency').getByRole('alert');
    await expect.poll(() => textOf(errors), SHOWN).toContain('customer_not_found');
    await ref.fill(customer.email);
    await page.getByRole('button', { name: 'Check consistency' }).click();
    await expect
      .poll(() => textOf(page.locator('#consistency-out')), SHOWN)
      .toContain(`Consistent: the books of ${customer.id} agree.`);
    expect(await errors.isHidden()).toBe(true);

    await expect.poll(() => textOf(page.locator('#alerts-out')), SHOWN).not.toBe('');
    await screenshot(page, 'admin');
    expect(problems).toEqual([]);
  });

  it('sends the user back to sign-in, saying why, once the token expires', async () => {
    const page = await openDashboard();
    const ttlSeconds = 5;
    const token = await mintToken(JWT_SECRET, { sub: customer.id, role: 'customer' }, ttlSeconds);
    const expiresAt = Date.now() + ttlSeconds * 1000;
    await signIn(page, token);
    await page.waitForTimeout(Math.max(0, expiresAt - Date.now()) + 1100);
    await page.getByRole('button', { name: 'Refresh notifications' }).click();
    await page.getByLabel('Bearer token').waitFor(SHOWN);
    await expect.poll(() => textOf(page.getByRole('alert')), SHOWN).toContain('expired');
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
  });
});
