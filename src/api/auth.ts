// Bearer JWT (HS256) authentication and the role checks every non-public route relies on.
import type { MiddlewareHandler } from 'hono';
import { sign, verify } from 'hono/jwt';
import { ApiError } from './errors.js';

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

/** Requires a valid bearer token; 401 with a reason otherwise. */
export function authenticate(secret: string): MiddlewareHandler<AuthEnv> {
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
    const { sub, role } = payload;
    if (typeof sub !== 'string' || sub.length === 0 || (role !== 'customer' && role !== 'admin')) {
      throw new ApiError(
        401,
        'unauthorized',
        'The bearer token needs a "sub" claim and a "role" of customer or admin.',
      );
    }
    c.set('auth', { sub, role });
    await next();
  };
}

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
