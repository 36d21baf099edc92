// Marketplace items: customers list things to sell, anyone signed in browses them, sellers withdraw.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { toDate } from '../../db/client.js';
import { customerOnly, type AuthEnv, type Principal } from '../auth.js';
import { UUID_PATTERN, errorResponse, plainText, security, type AppDeps } from '../common.js';
import { ApiError, validationHook } from '../errors.js';

/** The highest price of one item; a full cart of 50 stays far below the ledger's line limit. */
export const MAX_ITEM_PRICE = 100_000_000;

export const ITEM_STATUSES = ['available', 'sold', 'withdrawn'] as const;

export const itemIdSchema = z
  .string()
  .trim()
  .refine((v) => UUID_PATTERN.test(v), { message: 'must be an item id (UUID)' })
  .transform((v) => v.toLowerCase())
  .openapi({ example: '3b241101-e2bb-4255-8caf-4136c566a962' });

const ItemSchema = z
  .object({
    id: z.string(),
    title: z.string(),
    price: z.number().int(),
    sellerId: z.string(),
    ownerId: z.string().nullable().openapi({
      description: 'Who owns it now; null on a sold item for anyone but its buyer and admins',
    }),
    status: z.enum(ITEM_STATUSES),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Item');

const CreateItemSchema = z
  .object({
    title: plainText({ max: 200, what: 'a text of 1 to 200 characters' }),
    price: z
      .number({ error: 'must be a positive integer number of credits' })
      .int('must be a positive integer number of credits')
      .positive('must be a positive integer number of credits')
      .max(MAX_ITEM_PRICE, `must be at most ${MAX_ITEM_PRICE} credits`)
      .openapi({ example: 2000 }),
  })
  .strict()
  .openapi('CreateItem');

const ItemParams = z.object({ id: itemIdSchema });

const createItem = createRoute({
  method: 'post',
  path: '/v1/items',
  tags: ['marketplace'],
  summary: 'List an item for sale; the caller is the seller',
  security,
  middleware: [customerOnly] as const,
  request: {
    body: { required: true, content: { 'application/json': { schema: CreateItemSchema } } },
  },
  responses: {
    201: { content: { 'application/json': { schema: ItemSchema } }, description: 'Listed' },
    400: errorResponse('Invalid body'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not a customer'),
    404: errorResponse('The seller is not an active customer'),
  },
});

const getItem = createRoute({
  method: 'get',
  path: '/v1/items/{id}',
  tags: ['marketplace'],
  summary: 'One item',
  security,
  request: { params: ItemParams },
  responses: {
    200: { content: { 'application/json': { schema: ItemSchema } }, description: 'The item' },
    400: errorResponse('Not an item id'),
    401: errorResponse('No or bad token'),
    404: errorResponse('No such item'),
  },
});

const listItems = createRoute({
  method: 'get',
  path: '/v1/items',
  tags: ['marketplace'],
  summary: 'Items, newest first, by status and seller',
  security,
  request: {
    query: z.object({
      status: z.enum(ITEM_STATUSES).optional(),
      sellerId: z
        .string()
        .trim()
        .refine((v) => UUID_PATTERN.test(v), { message: 'must be a customer id (UUID)' })
        .optional(),
      limit: z.coerce.number().int().min(1).max(200).default(50),
    }),
  },
  responses: {
    200: {
      content: { 'application/json': { schema: z.object({ items: z.array(ItemSchema) }) } },
      description: 'Items',
    },
    400: errorResponse('Bad filter'),
    401: errorResponse('No or bad token'),
  },
});

const withdrawItem = createRoute({
  method: 'post',
  path: '/v1/items/{id}/withdraw',
  tags: ['marketplace'],
  summary: 'Take an available item off sale (its seller only)',
  security,
  middleware: [customerOnly] as const,
  request: { params: ItemParams },
  responses: {
    200: { content: { 'application/json': { schema: ItemSchema } }, description: 'Withdrawn' },
    400: errorResponse('Not an item id'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not the seller'),
    404: errorResponse('No such item'),
    409: errorResponse('Already sold or withdrawn'),
  },
});

interface ItemRow {
  id: string;
  title: string;
  price: string;
  seller_id: string;
  owner_id: string;
  status: (typeof ITEM_STATUSES)[number];
  created_at: Date | string;
  updated_at: Date | string;
}

/** What a caller sees of an item: who bought a sold item is for the buyer and admins only. */
const present = (r: ItemRow, viewer: Principal) => ({
  id: r.id,
  title: r.title,
  price: Number(r.price),
  sellerId: r.seller_id,
  ownerId:
    r.status !== 'sold' || viewer.role === 'admin' || viewer.sub === r.owner_id ? r.owner_id : null,
  status: r.status,
  createdAt: toDate(r.created_at).toISOString(),
  updatedAt: toDate(r.updated_at).toISOString(),
});

/** Items belong to customers; an admin token has no wallet to buy or sell with. */
export function requireCustomer(principal: Principal): string {
  if (principal.role !== 'customer' || !UUID_PATTERN.test(principal.sub)) {
    throw new ApiError(
      403,
      'forbidden',
      'Only customers buy and sell items; use a customer token.',
    );
  }
  return principal.sub;
}

/** The marketplace item routes: list, read, browse, withdraw. */
export function itemRoutes({ db, logger }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  async function itemOr404(id: string): Promise<ItemRow> {
    const [row] = await db.sql<ItemRow[]>`select * from items where id = ${id}`;
    if (!row) throw new ApiError(404, 'item_not_found', `No item with id ${id}.`);
    return row;
  }

  /** Lists a new item for sale by the caller. */
  app.openapi(createItem, async (c) => {
    const sellerId = requireCustomer(c.get('auth'));
    const body = c.req.valid('json');
    const [row] = await db.sql<ItemRow[]>`
      insert into items (seller_id, owner_id, title, price, status)
      select c.id, c.id, ${body.title}, ${body.price}, 'available'
      from customers c
      where c.id = ${sellerId} and c.anonymised_at is null
      returning *`;
    if (!row) {
      throw new ApiError(404, 'customer_not_found', 'The caller is not an active customer.');
    }
    logger.info({ itemId: row.id, sellerId, price: body.price }, 'item listed');
    return c.json(present(row, c.get('auth')), 201);
  });

  /** Reads one item. */
  app.openapi(getItem, async (c) => {
    return c.json(present(await itemOr404(c.req.valid('param').id), c.get('auth')), 200);
  });

  /** Browses items, e.g. everything still for sale (`?status=available`). */
  app.openapi(listItems, async (c) => {
    const q = c.req.valid('query');
    const rows = await db.sql<ItemRow[]>`
      select * from items
      where true
        ${q.status ? db.sql`and status = ${q.status}` : db.sql``}
        ${q.sellerId ? db.sql`and seller_id = ${q.sellerId}` : db.sql``}
      order by created_at desc, id
      limit ${q.limit}`;
    const viewer = c.get('auth');
    return c.json({ items: rows.map((row) => present(row, viewer)) }, 200);
  });

  /** Takes an item off sale; only its seller can, and only while nobody has bought it. */
  app.openapi(withdrawItem, async (c) => {
    const sellerId = requireCustomer(c.get('auth'));
    const { id } = c.req.valid('param');
    // Conditional on status: an order selling the item at the same moment wins or loses on the
    // row lock, never both.
    const [row] = await db.sql<ItemRow[]>`
      update items set status = 'withdrawn', updated_at = now()
      where id = ${id} and seller_id = ${sellerId} and status = 'available'
      returning *`;
    if (row) {
      logger.info({ itemId: id, sellerId }, 'item withdrawn');
      return c.json(present(row, c.get('auth')), 200);
    }
    const item = await itemOr404(id);
    if (item.seller_id !== sellerId) {
      throw new ApiError(403, 'forbidden', 'Only the seller can withdraw this item.');
    }
    throw new ApiError(
      409,
      'item_not_available',
      `Item ${id} is ${item.status} and can no longer be withdrawn.`,
    );
  });

  return app;
}
