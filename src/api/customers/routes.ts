// Customers: admins create them (each with a credits wallet); anyone resolves their own.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { accounts, customers } from '../../db/schema.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import { errorResponse, isPlaceholder, plainText, security, type AppDeps } from '../common.js';
import { ApiError, validationHook } from '../errors.js';
import { checkCustomerRef, findCustomerByRef } from './lookup.js';

const CustomerSchema = z
  .object({
    id: z.string().uuid(),
    email: z.string().nullable(),
    externalId: z.string().nullable(),
    createdAt: z.string(),
    anonymisedAt: z.string().nullable(),
  })
  .openapi('Customer');

const CreateCustomerSchema = z
  .object({
    email: plainText({ max: 254, what: 'an e-mail address' })
      .refine((v) => !isPlaceholder(v), { message: 'is a placeholder, not an e-mail address' })
      .pipe(z.string().email('must be an e-mail address')),
    externalId: plainText({ max: 200, what: 'an external id' })
      .refine((v) => !isPlaceholder(v), { message: 'is a placeholder, not an external id' })
      .optional(),
  })
  .strict()
  .openapi('CreateCustomer');

type CustomerRow = typeof customers.$inferSelect;
const present = (c: CustomerRow) => ({
  id: c.id,
  email: c.email,
  externalId: c.externalId,
  createdAt: c.createdAt.toISOString(),
  anonymisedAt: c.anonymisedAt?.toISOString() ?? null,
});

const createCustomer = createRoute({
  method: 'post',
  path: '/v1/customers',
  tags: ['customers'],
  summary: 'Create a customer and their credits wallet (admin)',
  security,
  middleware: [adminOnly] as const,
  request: {
    body: { required: true, content: { 'application/json': { schema: CreateCustomerSchema } } },
  },
  responses: {
    201: { content: { 'application/json': { schema: CustomerSchema } }, description: 'Created' },
    400: errorResponse('Invalid body'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    409: errorResponse('E-mail or external id already in use'),
  },
});

const getCustomer = createRoute({
  method: 'get',
  path: '/v1/customers/{ref}',
  tags: ['customers'],
  summary: 'Resolve a customer by id, e-mail or external id',
  security,
  request: { params: z.object({ ref: z.string() }) },
  responses: {
    200: {
      content: { 'application/json': { schema: CustomerSchema } },
      description: 'The customer',
    },
    400: errorResponse('Placeholder or empty reference'),
    401: errorResponse('No or bad token'),
    404: errorResponse('No such customer, or another customer'),
  },
});

export function customerRoutes({ db }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Creates the customer and their wallet in one transaction. */
  app.openapi(createCustomer, async (c) => {
    const body = c.req.valid('json');
    try {
      const created = await db.db.transaction(async (tx) => {
        const [customer] = await tx
          .insert(customers)
          .values({ email: body.email, externalId: body.externalId ?? null })
          .returning();
        await tx
          .insert(accounts)
          .values({ kind: 'wallet', customerId: customer!.id, code: 'wallet' });
        return customer!;
      });
      return c.json(present(created), 201);
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause ?? err;
      if ((cause as { code?: string }).code === '23505') {
        throw new ApiError(
          409,
          'customer_exists',
          'A customer with this e-mail or external id already exists.',
        );
      }
      throw err;
    }
  });

  /** Resolves a customer by UUID, e-mail (contains @) or external id, in that order. */
  app.openapi(getCustomer, async (c) => {
    const ref = checkCustomerRef(c.req.valid('param').ref);
    const customer = await findCustomerByRef(db, ref);
    const principal = c.get('auth');
    // Another customer's record answers exactly like a missing one, so the answer never tells
    // whether an e-mail address or external id has an account here.
    if (!customer || (principal.role !== 'admin' && principal.sub !== customer.id)) {
      throw new ApiError(
        404,
        'customer_not_found',
        'No customer matches this id, e-mail or external id.',
      );
    }
    return c.json(present(customer), 200);
  });

  return app;
}
