// Bearer JWT authentication (HS256 with a shared secret, or RS256/ES256 from an identity
// provider's JWKS) and the role checks every non-public route relies on.
import type { MiddlewareHandler } from 'hono';
import { sign } from 'hono/jwt';
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as jose,
  jwtVerify,
  type JWTVerifyGetKey,
} from 'jose';
import { CONTROL_CHARACTERS, UUID_PATTERN } from './common.js';
import { ApiError } from './errors.js';

/** The longest a token may live when AUTH_MAX_TOKEN_LIFETIME does not say otherwise: one day. */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 24 * 60 * 60;
/** Clock difference tolerated between the machine that minted a token and this one. */
const CLOCK_SKEW_SECONDS = 60;
/** Signature algorithms accepted from the JWKS; HS256 is only ever checked against the secret. */
const ASYMMETRIC_ALGORITHMS = ['RS256', 'ES256'] as const;

export type Role = 'customer' | 'admin';

export interface Principal {
  sub: string;
  role: Role;
}

export type AuthEnv = { Variables: { auth: Principal } };

/** How bearer tokens are verified; at least one of `secret` and `jwks` must be given. */
export interface AuthSettings {
  /** HS256 shared secret (AUTH_JWT_SECRET). */
  secret?: string | undefined;
  /** Public keys of an identity provider: a JWKS URL (AUTH_JWKS_URL) or a key resolver. */
  jwks?: string | URL | JWTVerifyGetKey | undefined;
  /** Required `iss` when set (AUTH_JWT_ISSUER). */
  issuer?: string | undefined;
  /** Required `aud` when set (AUTH_JWT_AUDIENCE). */
  audience?: string | undefined;
  maxLifetimeSeconds?: number | undefined;
}

/** Mints a token; used by `npm run token` and by tests. */
export async function mintToken(
  secret: string,
  principal: Principal,
  ttlSeconds = 12 * 60 * 60,
  claims: { iss?: string; aud?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return sign(
    { ...claims, sub: principal.sub, role: principal.role, iat: now, exp: now + ttlSeconds },
    secret,
    'HS256',
  );
}

const refuse = (code: string, message: string) => new ApiError(401, code, message);

/** Turns a failed verification into a 401 that says what was wrong (503 when keys are unreachable). */
function verificationError(err: unknown, settings: AuthSettings): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof jose.JWTExpired) {
    return refuse('unauthorized', 'The bearer token has expired; mint a new one.');
  }
  if (err instanceof jose.JWTClaimValidationFailed) {
    if (err.claim === 'iss') {
      return refuse(
        'token_issuer_mismatch',
        `The bearer token's "iss" must be ${JSON.stringify(settings.issuer)}.`,
      );
    }
    if (err.claim === 'aud') {
      return refuse(
        'token_audience_mismatch',
        `The bearer token's "aud" must include ${JSON.stringify(settings.audience)}.`,
      );
    }
    return refuse('unauthorized', `The bearer token's "${err.claim}" claim is invalid.`);
  }
  if (err instanceof jose.JOSEAlgNotAllowed) {
    return refuse(
      'token_algorithm_not_allowed',
      'The bearer token is signed with an algorithm this API does not accept.',
    );
  }
  if (err instanceof jose.JWKSNoMatchingKey || err instanceof jose.JWKSMultipleMatchingKeys) {
    return refuse(
      'unauthorized',
      'No key of the identity provider matches the bearer token ("kid"); it was not signed by it.',
    );
  }
  if (err instanceof jose.JWSSignatureVerificationFailed) {
    return refuse('unauthorized', "The bearer token's signature does not verify.");
  }
  return refuse('unauthorized', 'The bearer token is invalid or expired.');
}

/** The JWKS could not be fetched: the caller did nothing wrong, so 503 rather than 401. */
class KeysUnavailable extends ApiError {
  constructor() {
    super(
      503,
      'auth_keys_unavailable',
      "The identity provider's signing keys could not be fetched; try again shortly.",
    );
  }
}

/** Picks the key by the token's `alg`: HS256 only from the secret, RS256/ES256 only from the JWKS. */
function keyResolver(settings: AuthSettings): { algorithms: string[]; key: JWTVerifyGetKey } {
  const secret = settings.secret ? new TextEncoder().encode(settings.secret) : undefined;
  const jwks =
    settings.jwks === undefined
      ? undefined
      : typeof settings.jwks === 'function'
        ? settings.jwks
        : createRemoteJWKSet(new URL(settings.jwks));
  if (!secret && !jwks) throw new Error('authenticate needs a secret or a JWKS');
  const algorithms = [...(secret ? ['HS256'] : []), ...(jwks ? ASYMMETRIC_ALGORITHMS : [])];
  return {
    algorithms,
    key: async (header, token) => {
      if (header.alg === 'HS256' && secret) return secret;
      if (jwks && (ASYMMETRIC_ALGORITHMS as readonly string[]).includes(header.alg)) {
        try {
          return await jwks(header, token);
        } catch (err) {
          if (
            err instanceof jose.JWKSNoMatchingKey ||
            err instanceof jose.JWKSMultipleMatchingKeys
          ) {
            throw err;
          }
          throw new KeysUnavailable();
        }
      }
      throw new jose.JOSEAlgNotAllowed(`"alg" ${header.alg} is not accepted`);
    },
  };
}

/**
 * Requires a valid bearer token; 401 with a reason otherwise. A token must expire (`exp`), may
 * live at most `maxLifetimeSeconds`, and a customer token's `sub` must be a customer id (UUID),
 * so a forged or stolen token cannot be valid for years and no query sees a `sub` it cannot hold.
 * `iss` and `aud` are checked when configured.
 */
export function authenticate(settings: AuthSettings): MiddlewareHandler<AuthEnv> {
  const maxLifetimeSeconds = settings.maxLifetimeSeconds ?? DEFAULT_MAX_TOKEN_LIFETIME_SECONDS;
  const { algorithms, key } = keyResolver(settings);
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (!header) {
      throw new ApiError(
        401,
        'unauthorized',
        'Missing Authorization header: send "Authorization: Bearer <token>".',
      );
    }
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) {
      throw new ApiError(401, 'unauthorized', 'Authorization header must be "Bearer <token>".');
    }
    const token = match[1]!;
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new ApiError(401, 'unauthorized', 'The bearer token is not a JWT.');
    }
    if (typeof alg !== 'string' || !algorithms.includes(alg)) {
      throw new ApiError(
        401,
        'token_algorithm_not_allowed',
        `The bearer token is signed with ${JSON.stringify(alg ?? null)}; this API accepts ${algorithms.join(', ')}.`,
      );
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms,
        ...(settings.issuer ? { issuer: settings.issuer } : {}),
        ...(settings.audience ? { audience: settings.audience } : {}),
      }));
    } catch (err) {
      const refusal = verificationError(err, settings);
      if (refusal.status === 503) c.header('Retry-After', '5');
      throw refusal;
    }
    const { sub, role, exp, iat } = payload;
    if (typeof sub !== 'string' || sub.length === 0 || (role !== 'customer' && role !== 'admin')) {
      throw new ApiError(
        401,
        'unauthorized',
        'The bearer token needs a "sub" claim and a "role" of customer or admin.',
      );
    }
    const now = Math.floor(Date.now() / 1000);
    if (typeof exp !== 'number' || !Number.isFinite(exp)) {
      throw new ApiError(
        401,
        'unauthorized',
        'The bearer token has no "exp" claim; mint a new one.',
      );
    }
    const lifetime = typeof iat === 'number' ? Math.max(exp - iat, exp - now) : exp - now;
    if (lifetime > maxLifetimeSeconds + CLOCK_SKEW_SECONDS) {
      throw new ApiError(
        401,
        'unauthorized',
        `The bearer token lives longer than the ${maxLifetimeSeconds} s this API accepts; mint a shorter one.`,
      );
    }
    if (role === 'customer' && !UUID_PATTERN.test(sub)) {
      throw new ApiError(401, 'unauthorized', 'A customer token\'s "sub" must be a customer id.');
    }
    if (sub.length > 200 || CONTROL_CHARACTERS.test(sub)) {
      throw new ApiError(401, 'unauthorized', 'The bearer token\'s "sub" is not a valid name.');
    }
    c.set('auth', { sub: role === 'customer' ? sub.toLowerCase() : sub, role });
    await next();
  };
}

/**
 * Route middleware that checks the caller's role before the request is validated, so a token
 * without the right role gets 403 whatever it sent.
 */
export function requireRole(role: Role): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const principal = c.get('auth');
    if (principal.role !== role) {
      throw new ApiError(
        403,
        'forbidden',
        role === 'admin' ? 'This needs an admin token.' : 'This needs a customer token.',
      );
    }
    await next();
  };
}

export const adminOnly = requireRole('admin');
export const customerOnly = requireRole('customer');

export function requireAdmin(principal: Principal): void {
  if (principal.role !== 'admin') {
    throw new ApiError(403, 'forbidden', 'This needs an admin token.');
  }
}

/** The customer a request acts for: the caller, or for admins the one they name. */
export function actingCustomer(principal: Principal, requested: string | undefined): string {
  if (principal.role === 'admin') {
    if (!requested) {
      throw new ApiError(
        400,
        'invalid_request',
        'customerId: admins must name the customer (?customerId=…).',
      );
    }
    return requested;
  }
  if (requested && requested !== principal.sub) {
    throw new ApiError(403, 'forbidden', 'You can only see your own wallet.');
  }
  return principal.sub;
}

/** 403 unless the caller is an admin or the owner of the resource. */
export function requireOwnerOrAdmin(principal: Principal, ownerId: string): void {
  if (principal.role !== 'admin' && principal.sub !== ownerId) {
    throw new ApiError(403, 'forbidden', 'This belongs to another customer.');
  }
}
