// Authentication and authorisation at the edge: token lifetime, role before validation, a
// customer token whose `sub` is no customer, and control characters in free text.
import { sign } from 'hono/jwt';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  JWT_SECRET,
  adminToken,
  createCustomer,
  customerToken,
  jsonRequest,
  testApp,
  uniqueId,
  useTestApp,
} from '../../test/helpers.js';
import { processEnv } from '../config.js';
import { mintToken } from './auth.js';

const t = useTestApp('auth', {}, { checkLedger: true });

const now = () => Math.floor(Date.now() / 1000);
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

async function expectError(res: Response, status: number, code?: string) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.message.length).toBeGreaterThan(10);
  if (code) expect(body.error.code).toBe(code);
  else expect(body.error.code).toMatch(/^[a-z_]+$/);
}

/** Workflows of this file's task queue: none may have started. */
async function workflowsStarted(): Promise<number> {
  let n = 0;
  for await (const _ of t.temporal.workflow.list({ query: `TaskQueue = '${t.taskQueue}'` })) n++;
  return n;
}

describe('bearer tokens must expire, and soon', () => {
  it('accepts a token minted with the default lifetime', async () => {
    const customer = await createCustomer(t.db);
    const res = await t.app.request('/v1/wallet', bearer(await customerToken(customer.id)));
    expect(res.status).toBe(200);
  });

  it.each([
    ['without exp', (sub: string) => ({ sub, role: 'customer', iat: now() })],
    [
      'valid for 100 years',
      (sub: string) => ({ sub, role: 'customer', iat: now(), exp: now() + 100 * 365 * 86400 }),
    ],
    [
      'valid for 100 years, without iat',
      (sub: string) => ({ sub, role: 'customer', exp: now() + 100 * 365 * 86400 }),
    ],
    [
      'one hour over the default day',
      (sub: string) => ({ sub, role: 'customer', iat: now(), exp: now() + 25 * 3600 }),
    ],
    ['with a non-numeric exp', (sub: string) => ({ sub, role: 'customer', exp: 'never' })],
  ])('refuses a token %s with 401', async (_label, claims) => {
    const customer = await createCustomer(t.db);
    const token = await sign(
      claims(customer.id) as Parameters<typeof sign>[0],
      JWT_SECRET,
      'HS256',
    );
    await expectError(await t.app.request('/v1/wallet', bearer(token)), 401, 'unauthorized');
  });

  it('caps the lifetime by configuration', async () => {
    const customer = await createCustomer(t.db);
    const strict = testApp(t.db, t.temporal, t.taskQueue, { maxTokenLifetimeSeconds: 600 });
    const hour = await mintToken(JWT_SECRET, { sub: customer.id, role: 'customer' }, 3600);
    await expectError(await strict.request('/v1/wallet', bearer(hour)), 401, 'unauthorized');
    const minutes = await mintToken(JWT_SECRET, { sub: customer.id, role: 'customer' }, 300);
    expect((await strict.request('/v1/wallet', bearer(minutes))).status).toBe(200);
  });

  it.each([
    ["x' or 1=1--", 'customer'],
    ['not-a-uuid', 'customer'],
    [`admin\u0000`, 'admin'],
    ['a'.repeat(500), 'admin'],
  ])('refuses a signed token whose sub is %j (%s) with 401, never 500', async (sub, role) => {
    const token = await sign({ sub, role, iat: now(), exp: now() + 600 }, JWT_SECRET, 'HS256');
    for (const path of ['/v1/wallet', '/v1/notifications', `/v1/customers/${randomUUID()}`]) {
      await expectError(await t.app.request(path, bearer(token)), 401, 'unauthorized');
    }
  });

  it('treats an upper-case customer id in sub as the same customer', async () => {
    const customer = await createCustomer(t.db);
    const token = await customerToken(customer.id.toUpperCase());
    const res = await t.app.request('/v1/wallet', bearer(token));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ customerId: customer.id, balance: 0, grants: [] });
  });
});

describe('the role is checked before the body', () => {
  const adminRoutes: [string, string, unknown, Record<string, string>][] = [
    ['POST', '/v1/customers', {}, {}],
    ['POST', '/v1/customers', { email: 'not an address' }, {}],
    ['POST', '/v1/admin/adjustments', { customerId: randomUUID(), amount: 5, reason: 'ok!' }, {}],
    [
      'POST',
      '/v1/admin/adjustments',
      { customerId: randomUUID(), amount: 5, reason: 'x' },
      { 'idempotency-key': 'k-1' },
    ],
    ['POST', '/v1/admin/adjustments', 'not json', {}],
    ['GET', '/v1/admin/adjustments/not-an-id', undefined, {}],
    ['PUT', '/v1/admin/prices/WHATSAPP/usa', { price: -1 }, {}],
    ['PUT', '/v1/admin/prices/whatsapp/US', { price: 10 }, {}],
  ];

  it.each(adminRoutes)(
    'a customer token on %s %s gets 403 whatever it sent',
    async (method, path, body, headers) => {
      const customer = await createCustomer(t.db);
      const token = await customerToken(customer.id);
      const res = await t.app.request(
        path,
        body === undefined
          ? { method, ...bearer(token) }
          : jsonRequest(method, body, token, headers),
      );
      await expectError(res, 403, 'forbidden');
    },
  );

  it.each([
    ['POST', '/v1/verifications', { service: '!!' }],
    ['POST', '/v1/orders', { itemIds: 'nope' }],
    ['POST', '/v1/checkouts', {}],
    ['POST', '/v1/items', { title: '' }],
    ['POST', '/v1/items/not-an-id/withdraw', {}],
  ])(
    'an admin token on customer-only %s %s gets 403 whatever it sent',
    async (method, path, body) => {
      await expectError(
        await t.app.request(path, jsonRequest(method, body, await adminToken())),
        403,
        'forbidden',
      );
    },
  );
});

describe('the caller is resolved before any workflow starts', () => {
  it('a customer token for no customer cannot start a verification (404, nothing started)', async () => {
    const [price] = await t.db.sql<{ service: string; country: string }[]>`
      select service, country from prices limit 1`;
    const body = price
      ? { service: price.service, country: price.country }
      : { service: 'whatsapp', country: 'US' };
    const ghost = await customerToken(randomUUID());
    const res = await t.app.request(
      '/v1/verifications',
      jsonRequest('POST', body, ghost, { 'idempotency-key': uniqueId('ghost') }),
    );
    await expectError(res, 404, 'customer_not_found');
    expect(await workflowsStarted()).toBe(0);
  });
});

describe('control characters in free text are refused with 400', () => {
  it.each([
    ['an adjustment reason', '/v1/admin/adjustments', { amount: 5, reason: 'goodwill\u0000' }],
    [
      'an adjustment reason (escape)',
      '/v1/admin/adjustments',
      { amount: 5, reason: 'a\u001b[2Jb' },
    ],
    ['an external id', '/v1/customers', { email: 'a@example.test', externalId: 'ext\u0000' }],
    ['an e-mail', '/v1/customers', { email: 'a\u0000@example.test' }],
  ])('%s', async (_label, path, body) => {
    const customer = await createCustomer(t.db);
    const res = await t.app.request(
      path,
      jsonRequest(
        'POST',
        { ...(path.includes('adjust') ? { customerId: customer.id } : {}), ...body },
        await adminToken(),
        { 'idempotency-key': uniqueId('ctl') },
      ),
    );
    await expectError(res, 400, 'invalid_request');
    expect(await workflowsStarted()).toBe(0);
  });

  it('an item title with a NUL', async () => {
    const seller = await createCustomer(t.db);
    const res = await t.app.request(
      '/v1/items',
      jsonRequest('POST', { title: 'lamp\u0000', price: 10 }, await customerToken(seller.id)),
    );
    await expectError(res, 400, 'invalid_request');
    const rows = await t.db.sql`select 1 from items where seller_id = ${seller.id}`;
    expect(rows).toHaveLength(0);
  });

  it('an Idempotency-Key with a control character', async () => {
    const customer = await createCustomer(t.db);
    const res = await t.app.request(
      '/v1/admin/adjustments',
      jsonRequest(
        'POST',
        { customerId: customer.id, amount: 5, reason: 'goodwill' },
        await adminToken(),
        {
          'idempotency-key': 'key\u0001',
        },
      ),
    );
    await expectError(res, 400, 'invalid_request');
  });

  it('a transaction type filter, and dates PostgreSQL cannot hold', async () => {
    const customer = await createCustomer(t.db);
    const token = await customerToken(customer.id);
    for (const query of [
      'type=top%00up',
      'from=275760-09-13',
      'to=275760-09-13T00:00:00Z',
      'from=-000001-01-01',
      'from=2026-13-45',
    ]) {
      await expectError(
        await t.app.request(`/v1/wallet/transactions?${query}`, bearer(token)),
        400,
        'invalid_request',
      );
    }
    const ok = await t.app.request(
      '/v1/wallet/transactions?from=2026-01-01&to=2026-12-31T23:59:59Z',
      bearer(token),
    );
    expect(ok.status).toBe(200);
  });
});

describe('npm run token', () => {
  const run = (args: string[], dataDir: string, extraEnv: Record<string, string> = {}) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/token.ts', ...args], {
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
        env: {
          ...processEnv(),
          AUTH_JWT_SECRET: JWT_SECRET,
          CREDITFLOW_DATA_DIR: dataDir,
          AUTH_MAX_TOKEN_LIFETIME: '86400',
          ...extraEnv,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', (code) => resolve({ code, out: out.trim() }));
    });

  it('mints tokens the API accepts, and refuses a lifetime above the cap', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'creditflow-token-'));
    const customer = await createCustomer(t.db);
    const minted = await run(['--customer', customer.id], dataDir);
    expect(minted.code).toBe(0);
    expect((await t.app.request('/v1/wallet', bearer(minted.out))).status).toBe(200);
    const admin = await run(['--admin'], dataDir);
    expect(admin.code).toBe(0);
    expect(
      (await t.app.request(`/v1/wallet?customerId=${customer.id}`, bearer(admin.out))).status,
    ).toBe(200);
    const tooLong = await run(['--customer', customer.id, '--ttl', String(86400 * 365)], dataDir);
    expect(tooLong.code).toBe(2);
    expect(tooLong.out).toBe('');
  });

  it('names the issuer and audience the API is set to check', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'creditflow-token-'));
    const minted = await run(['--admin'], dataDir, {
      AUTH_JWT_ISSUER: 'https://idp.example.test',
      AUTH_JWT_AUDIENCE: 'creditflow-api',
    });
    expect(minted.code).toBe(0);
    const claims = JSON.parse(Buffer.from(minted.out.split('.')[1]!, 'base64url').toString()) as {
      iss?: string;
      aud?: string;
    };
    expect(claims).toMatchObject({ iss: 'https://idp.example.test', aud: 'creditflow-api' });
  });
});
