// Tokens from an identity provider: RS256/ES256 keys from a JWKS served over HTTP, the issuer and
// audience checked when configured, and every wrong token refused with 401 and a code.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JWT_SECRET, createCustomer, testApp, useTestApp } from '../../test/helpers.js';
import { mintToken } from './auth.js';

const t = useTestApp('auth-jwks');

const ISSUER = 'https://idp.example/';
const AUDIENCE = 'creditflow-api';

interface SigningKey {
  kid: string;
  alg: 'ES256' | 'RS256' | 'ES384';
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(alg: SigningKey['alg'], kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

let es256: SigningKey;
let rs256: SigningKey;
let es384: SigningKey;
/** Not in the JWKS, but claims the kid of one that is. */
let impostor: SigningKey;
let jwksServer: Server;
let jwksUrl: string;

beforeAll(async () => {
  es256 = await signingKey('ES256', 'es-key');
  rs256 = await signingKey('RS256', 'rs-key');
  es384 = await signingKey('ES384', 'es384-key');
  impostor = await signingKey('ES256', 'es-key');
  const body = JSON.stringify({ keys: [es256.jwk, rs256.jwk, es384.jwk] });
  jwksServer = createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => jwksServer?.close(() => resolve()));
});

/** An app configured like production with an identity provider: JWKS only, issuer and audience. */
const idpApp = (extra: { secret?: string } = {}) =>
  testApp(
    t.db,
    t.temporal,
    t.taskQueue,
    { jwtSecret: extra.secret ?? '' },
    { auth: { jwks: jwksUrl, issuer: ISSUER, audience: AUDIENCE } },
  );

async function idpToken(
  key: SigningKey,
  sub: string,
  claims: Record<string, unknown> = {},
  { iss = ISSUER, aud = AUDIENCE }: { iss?: string | null; aud?: string | null } = {},
) {
  let jwt = new SignJWT({ role: 'customer', ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('10m');
  if (iss !== null) jwt = jwt.setIssuer(iss);
  if (aud !== null) jwt = jwt.setAudience(aud);
  return jwt.sign(key.privateKey);
}

const wallet = (app: ReturnType<typeof testApp>, token: string) =>
  app.request('/v1/wallet', { headers: { authorization: `Bearer ${token}` } });

async function expectRefused(res: Response, code: string) {
  expect(res.status).toBe(401);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(10);
}

describe('tokens signed by an identity provider (JWKS)', () => {
  it('accepts ES256 and RS256 tokens with the configured issuer and audience', async () => {
    const customer = await createCustomer(t.db);
    const app = idpApp();
    for (const key of [es256, rs256]) {
      const res = await wallet(app, await idpToken(key, customer.id));
      expect(res.status, key.alg).toBe(200);
      expect(await res.json()).toMatchObject({ customerId: customer.id });
    }
    // An audience list that contains ours is fine.
    const many = await idpToken(
      es256,
      customer.id,
      { aud: ['other-api', AUDIENCE] },
      { aud: null },
    );
    expect((await wallet(app, many)).status).toBe(200);
  });

  it('refuses a wrong or missing issuer', async () => {
    const customer = await createCustomer(t.db);
    const app = idpApp();
    for (const iss of ['https://evil.example/', null]) {
      await expectRefused(
        await wallet(app, await idpToken(es256, customer.id, {}, { iss })),
        'token_issuer_mismatch',
      );
    }
  });

  it('refuses a wrong or missing audience', async () => {
    const customer = await createCustomer(t.db);
    const app = idpApp();
    for (const aud of ['another-api', null]) {
      await expectRefused(
        await wallet(app, await idpToken(rs256, customer.id, {}, { aud })),
        'token_audience_mismatch',
      );
    }
  });

  it('refuses algorithms it does not accept, HS256 included when no secret is configured', async () => {
    const customer = await createCustomer(t.db);
    const app = idpApp();
    await expectRefused(
      await wallet(app, await idpToken(es384, customer.id)),
      'token_algorithm_not_allowed',
    );
    const hs = await mintToken(JWT_SECRET, { sub: customer.id, role: 'customer' }, 600, {
      iss: ISSUER,
      aud: AUDIENCE,
    });
    await expectRefused(await wallet(app, hs), 'token_algorithm_not_allowed');
    // HS256 "signed" with the provider's public key: the classic algorithm confusion.
    const confused = await new SignJWT({ role: 'customer' })
      .setProtectedHeader({ alg: 'HS256', kid: rs256.kid })
      .setSubject(customer.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(JSON.stringify(rs256.jwk)));
    await expectRefused(await wallet(app, confused), 'token_algorithm_not_allowed');
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const payload = Buffer.from(
      JSON.stringify({ sub: customer.id, role: 'customer', iss: ISSUER, aud: AUDIENCE, exp: 9e9 }),
    ).toString('base64url');
    await expectRefused(await wallet(app, `${header}.${payload}.`), 'token_algorithm_not_allowed');
  });

  it('refuses a token signed by a key the provider does not publish', async () => {
    const customer = await createCustomer(t.db);
    const app = idpApp();
    await expectRefused(await wallet(app, await idpToken(impostor, customer.id)), 'unauthorized');
    const unknownKid = await new SignJWT({ role: 'customer' })
      .setProtectedHeader({ alg: 'ES256', kid: 'no-such-key' })
      .setSubject(customer.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(impostor.privateKey);
    await expectRefused(await wallet(app, unknownKid), 'unauthorized');
  });

  it('keeps the same rules as HS256 tokens: exp required, lifetime capped, sub a customer id', async () => {
    const customer = await createCustomer(t.db);
    const app = idpApp();
    const expired = await new SignJWT({ role: 'customer' })
      .setProtectedHeader({ alg: 'ES256', kid: es256.kid })
      .setSubject(customer.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(Math.floor(Date.now() / 1000) - 600)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 10)
      .sign(es256.privateKey);
    await expectRefused(await wallet(app, expired), 'unauthorized');
    const forever = await new SignJWT({ role: 'customer' })
      .setProtectedHeader({ alg: 'ES256', kid: es256.kid })
      .setSubject(customer.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('10 years')
      .sign(es256.privateKey);
    await expectRefused(await wallet(app, forever), 'unauthorized');
    await expectRefused(await wallet(app, await idpToken(es256, 'not-a-uuid')), 'unauthorized');
  });

  it('accepts HS256 tokens next to the JWKS when a secret is configured, with the same iss/aud', async () => {
    const customer = await createCustomer(t.db);
    const app = idpApp({ secret: JWT_SECRET });
    const principal = { sub: customer.id, role: 'customer' } as const;
    const good = await mintToken(JWT_SECRET, principal, 600, { iss: ISSUER, aud: AUDIENCE });
    expect((await wallet(app, good)).status).toBe(200);
    expect((await wallet(app, await idpToken(es256, customer.id))).status).toBe(200);
    await expectRefused(
      await wallet(app, await mintToken(JWT_SECRET, principal, 600, { aud: AUDIENCE })),
      'token_issuer_mismatch',
    );
  });

  it('answers 503 (not 401) while the provider’s keys cannot be fetched', async () => {
    const customer = await createCustomer(t.db);
    const down = testApp(
      t.db,
      t.temporal,
      t.taskQueue,
      { jwtSecret: '' },
      { auth: { jwks: 'http://127.0.0.1:1/jwks.json', issuer: ISSUER, audience: AUDIENCE } },
    );
    const res = await wallet(down, await idpToken(es256, customer.id));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await res.json()).toMatchObject({ error: { code: 'auth_keys_unavailable' } });
  });
});

describe('issuer and audience on HS256 tokens', () => {
  it('checks them only when configured', async () => {
    const customer = await createCustomer(t.db);
    const principal = { sub: customer.id, role: 'customer' } as const;
    const plain = await mintToken(JWT_SECRET, principal, 600);
    expect((await wallet(t.app, plain)).status).toBe(200);
    const strict = testApp(
      t.db,
      t.temporal,
      t.taskQueue,
      {},
      { auth: { issuer: ISSUER, audience: AUDIENCE } },
    );
    await expectRefused(await wallet(strict, plain), 'token_issuer_mismatch');
    await expectRefused(
      await wallet(strict, await mintToken(JWT_SECRET, principal, 600, { iss: ISSUER, aud: 'x' })),
      'token_audience_mismatch',
    );
    const good = await mintToken(JWT_SECRET, principal, 600, { iss: ISSUER, aud: AUDIENCE });
    expect((await wallet(strict, good)).status).toBe(200);
  });
});
