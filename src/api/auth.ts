// Bearer JWT (HS256) authentication and the role checks every non-public route relies on.
import type { MiddlewareHandler } from 'hono';
import { sign, verify } from 'hono/jwt';
import { CONTROL_CHARACTERS, UUID_PATTERN } from './common.js';
import { ApiError } from './errors.js';

/** The longest a token may live when AUTH_MAX_TOKEN_LIFETIME does not say otherwise: one day. */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 24 * 60 * 60;
/** Clock difference tolerated between the machine that minted a token and this one. */
const CLOCK_SKEW_SECONDS = 60;

export type Role = 'customer' | 'admin';

export interface Principal {
  sub: string;
  role: Role;
}

export type AuthEnv = { Variables: { auth: Principal } };

/** Mints a token; used by `npm run token` and by tests. */
export async function mintToken(
  secret: string,
  principal: Principal,
  ttlSeconds = 12 * 60 * 60,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return sign(
    { sub: principal.sub, role: principal.role, iat: now, exp: now + ttlSeconds },
    secret,
    'HS256',
  );
}

/**
 * Requires a valid bearer token; 401 with a reason otherwise. A token must expire (`exp`), may
 * live at most `maxLifetimeSeconds`, and a customer token's `sub` must be a customer id (UUID),
 * so a forged or stolen token cannot be valid for years and no query sees a `sub` it cannot hold.
 */
export function authenticate(
  secret: string,
  { maxLifetimeSeconds = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS } = {},
): MiddlewareHandler<AuthEnv> {
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
    let payload: Record<string, unknown>;
    try {
      payload = await verify(match[1]!, secret, 'HS256');
    } catch {
      throw new ApiError(401, 'unauthorized', 'The bearer token is invalid or expired.');
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
