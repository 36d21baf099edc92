// Customers API: create, resolve by id / e-mail / external id, placeholders, auth.
import type { Client } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  expectLedgerConsistent,
  jsonRequest,
  testApp,
  testDatabase,
  uniqueId,
} from '../../../test/helpers.js';
import type { Database } from '../../db/client.js';
import type { App } from '../app.js';

let db: Database;
let temporal: Client;
let app: App;
let admin: string;

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
  app = testApp(db, temporal, uniqueId('customers'));
  admin = await adminToken();
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await temporal.connection.close();
  await db.close();
});

const countCustomers = async (email: string) =>
  Number(
    (
      await db.sql<
        { n: string }[]
      >`select count(*) as n from customers where lower(email) = lower(${email})`
    )[0]!.n,
  );

describe('POST /v1/customers', () => {
  it('creates a customer with an empty wallet', async () => {
    const email = `${randomUUID()}@example.test`;
    const externalId = uniqueId('ext');
    const res = await app.request(
      '/v1/customers',
      jsonRequest('POST', { email, externalId }, admin),
    );
    expect(res.status).toBe(201);
    const body = (await res.json()) as { id: string; email: string; externalId: string };
    expect(body).toMatchObject({ email, externalId, anonymisedAt: null });
    const wallet = await app.request(`/v1/wallet?customerId=${body.id}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(await wallet.json()).toEqual({
      customerId: body.id,
      balance: 0,
      available: 0,
      byCategory: { paid: 0, promotional: 0 },
      grants: [],
    });
  });

  it('answers 409 for an e-mail already in use, in any letter case', async () => {
    const email = `${randomUUID()}@example.test`;
    expect((await app.request('/v1/customers', jsonRequest('POST', { email }, admin))).status).toBe(
      201,
    );
    const res = await app.request(
      '/v1/customers',
      jsonRequest('POST', { email: email.toUpperCase() }, admin),
    );
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: 'customer_exists' } });
    expect(await countCustomers(email)).toBe(1);
  });

  it.each([
    ['malformed JSON', '{"email": '],
    ['a missing e-mail', {}],
    ['a placeholder e-mail', { email: '<email>' }],
    ['a non-string e-mail', { email: 42 }],
    ['an unknown field', { email: `${randomUUID()}@example.test`, role: 'admin' }],
    ['a placeholder external id', { email: `${randomUUID()}@example.test`, externalId: 'null' }],
  ])('refuses %s with a 400 and writes nothing', async (_label, body) => {
    const res = await app.request('/v1/customers', jsonRequest('POST', body, admin));
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toMatch(/^(invalid_request|malformed_json)$/);
    expect(json.error.message.length).toBeGreaterThan(5);
    if (typeof body === 'object' && 'email' in body && typeof body.email === 'string') {
      expect(await countCustomers(body.email)).toBe(0);
    }
  });

  it('is admin-only', async () => {
    const customer = await createCustomer(db);
    const res = await app.request(
      '/v1/customers',
      jsonRequest(
        'POST',
        { email: `${randomUUID()}@example.test` },
        await customerToken(customer.id),
      ),
    );
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: 'forbidden' } });
  });
});

describe('GET /v1/customers/:ref', () => {
  it('resolves the same customer by id, e-mail and external id', async () => {
    const customer = await createCustomer(db, { externalId: uniqueId('crm') });
    for (const ref of [
      customer.id,
      customer.email,
      customer.email.toUpperCase(),
      customer.externalId!,
    ]) {
      const res = await app.request(`/v1/customers/${encodeURIComponent(ref)}`, {
        headers: { authorization: `Bearer ${admin}` },
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ id: customer.id, email: customer.email });
    }
  });

  it.each(['<email>', 'null', 'undefined', '%20', '{id}', ':ref'])(
    'answers 400 for the placeholder %s',
    async (ref) => {
      const res = await app.request(`/v1/customers/${ref}`, {
        headers: { authorization: `Bearer ${admin}` },
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'invalid_reference' } });
    },
  );

  it('answers 400 for an empty reference and 404 for an unknown one', async () => {
    const empty = await app.request('/v1/customers/', {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(empty.status).toBe(400);
    const unknown = await app.request(`/v1/customers/${randomUUID()}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'customer_not_found' } });
  });

  it('lets customers see themselves, and answers for others exactly as for nobody', async () => {
    const alice = await createCustomer(db);
    const bob = await createCustomer(db, { externalId: uniqueId('ext') });
    const token = await customerToken(alice.id);
    const own = await app.request(`/v1/customers/${encodeURIComponent(alice.email)}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(own.status).toBe(200);
    const nobody = await app.request(`/v1/customers/${randomUUID()}@example.test`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(nobody.status).toBe(404);
    const nobodyBody = await nobody.json();
    // Bob's id, e-mail and external id: the same 404 as an address nobody has, so the answer
    // never tells whether an address has an account here.
    for (const ref of [bob.id, bob.email, bob.email.toUpperCase(), bob.externalId!]) {
      const other = await app.request(`/v1/customers/${encodeURIComponent(ref)}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(other.status).toBe(404);
      expect(await other.json()).toEqual(nobodyBody);
    }
  });

  it.each([
    ['%25', 'a percent sign (decoded once by the router, never twice)'],
    ['%zz', 'a malformed escape'],
    ['%00', 'a NUL'],
    ['abc%2500', 'an escaped escape of a NUL'],
    ['%0a', 'a line feed'],
    ['%ED%A0%80', 'a lone surrogate half'],
    ['x'.repeat(300), 'a reference longer than any e-mail'],
  ])('answers 4xx with the error shape for %s (%s)', async (ref) => {
    const res = await app.request(`/v1/customers/${ref}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toMatch(/^[a-z_]+$/);
    expect(body.error.message.length).toBeGreaterThan(10);
  });
});
