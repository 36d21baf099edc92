// The caller's wallet: balance, and history with the balance after each transaction.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { sharesByEntry, walletCredits } from '../../credits/grants-read.js';
import { toDate } from '../../db/client.js';
import { jsonBalance } from '../../ledger/ledger.js';
import { actingCustomer, type AuthEnv } from '../auth.js';
import {
  balanceSchema,
  customerIdSchema,
  errorResponse,
  plainText,
  security,
  type AppDeps,
} from '../common.js';
import { ApiError, errorBody, validationHook } from '../errors.js';
import type { StreamSlots, WalletEvent, WalletEventHub } from './events.js';

const HEARTBEAT_MS = 15_000;
/** Seconds a customer at the stream cap is told to wait before trying again. */
const STREAMS_RETRY_AFTER_SECONDS = 30;

const WalletGrantSchema = z
  .object({
    id: z.string(),
    category: z.enum(['paid', 'promotional']),
    source: z.string(),
    remaining: balanceSchema,
    priority: z.number().int(),
    effectiveAt: z.string(),
    expiresAt: z.string().nullable(),
    spendable: z
      .boolean()
      .openapi({ description: 'False before effectiveAt, and once past expiresAt' }),
  })
  .openapi('WalletGrant');

const WalletSchema = z
  .object({
    customerId: z.string(),
    balance: balanceSchema.openapi({ description: 'Every credit held, spendable or not' }),
    available: balanceSchema.openapi({ description: 'Credits spendable now' }),
    byCategory: z.object({ paid: balanceSchema, promotional: balanceSchema }).openapi({
      description: 'Credits spendable now, by category',
    }),
    grants: z.array(WalletGrantSchema).openapi({
      description: 'Open grants with credits left, in the order debits draw from them',
    }),
  })
  .openapi('Wallet');

const TransactionGrantSchema = z
  .object({
    grantId: z.string(),
    amount: balanceSchema,
    kind: z.string().openapi({
      description: 'grant, draw, return, breakage, expiry, void or opening',
    }),
  })
  .openapi('TransactionGrant');

const TransactionSchema = z
  .object({
    id: z.number().int().openapi({ description: 'Ledger entry id' }),
    type: z.string(),
    amount: balanceSchema.openapi({ description: 'Signed credits for this wallet' }),
    balanceAfter: balanceSchema,
    description: z.string(),
    createdAt: z.string(),
    grants: z
      .array(TransactionGrantSchema)
      .openapi({ description: "How the entry moved the wallet's grants" }),
  })
  .openapi('Transaction');

const TransactionPageSchema = z
  .object({ items: z.array(TransactionSchema), nextCursor: z.string().nullable() })
  .openapi('TransactionPage');

/**
 * A four-digit-year ISO 8601 date or date-time. JavaScript accepts years up to 275760, which
 * PostgreSQL cannot store, so the format is pinned rather than left to Date.parse.
 */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$/;
const isoDate = z.string().refine((v) => ISO_DATE.test(v) && !Number.isNaN(Date.parse(v)), {
  message: 'must be an ISO 8601 date or date-time such as 2026-11-25 or 2026-11-25T10:00:00Z',
});

const TransactionQuery = z.object({
  customerId: customerIdSchema.optional().openapi({ description: 'Admins only: whose wallet' }),
  type: plainText({ max: 64 }).optional(),
  from: isoDate.optional().openapi({ description: 'Inclusive lower bound on createdAt' }),
  to: isoDate.optional().openapi({ description: 'Exclusive upper bound on createdAt' }),
  cursor: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

const getWallet = createRoute({
  method: 'get',
  path: '/v1/wallet',
  tags: ['wallet'],
  summary: "The caller's credit balance",
  security,
  request: { query: z.object({ customerId: customerIdSchema.optional() }) },
  responses: {
    200: { content: { 'application/json': { schema: WalletSchema } }, description: 'Balance' },
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No wallet'),
  },
});

const listTransactions = createRoute({
  method: 'get',
  path: '/v1/wallet/transactions',
  tags: ['wallet'],
  summary: "The caller's transactions, newest first",
  security,
  request: { query: TransactionQuery },
  responses: {
    200: {
      content: { 'application/json': { schema: TransactionPageSchema } },
      description: 'A page',
    },
    400: errorResponse('Bad filter or cursor'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No wallet'),
  },
});

const encodeCursor = (postingId: number) => Buffer.from(`p:${postingId}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const match = /^p:(\d{1,18})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!match) throw new ApiError(400, 'invalid_cursor', 'cursor: not a cursor this API returned.');
  return Number(match[1]);
}

const walletEvents = createRoute({
  method: 'get',
  path: '/v1/wallet/events',
  tags: ['wallet'],
  summary: "Server-Sent Events: every balance change of the caller's wallet",
  description:
    'Sends `balance` events `{ balance, entry: { id, type, amount }, at }` (the first one is the current balance, with entry null) and a comment line every 15 s to keep proxies from closing the stream.',
  security,
  request: { query: z.object({ customerId: customerIdSchema.optional() }) },
  responses: {
    200: { content: { 'text/event-stream': { schema: z.string() } }, description: 'Event stream' },
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No wallet'),
    429: errorResponse('The customer already has as many open streams as allowed'),
    503: errorResponse(
      'The API process holds as many open streams as allowed (`stream_capacity_reached`)',
    ),
  },
});

export function walletRoutes({
  db,
  walletEvents: hub,
  streamSlots,
  shutdownSignal,
}: AppDeps & { walletEvents: WalletEventHub; streamSlots: StreamSlots }) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  async function walletOf(
    customerId: string,
    waitForPostings = false,
  ): Promise<{ id: number; balance: number | string }> {
    const [row] = await db.sql<{ id: string; balance: string }[]>`
      select id, balance from accounts where kind = 'wallet' and customer_id = ${customerId}
      ${waitForPostings ? db.sql`for share` : db.sql``}`;
    if (!row) throw new ApiError(404, 'customer_not_found', 'No wallet exists for this customer.');
    return { id: Number(row.id), balance: jsonBalance(row.balance) };
  }

  /** Current balance of the caller's wallet. */
  app.openapi(getWallet, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    const wallet = await walletOf(customerId);
    const credits = await walletCredits(db.sql, customerId);
    return c.json({ customerId, balance: wallet.balance, ...credits }, 200);
  });

  /** Paged history of the caller's wallet, with filters on type and time. */
  app.openapi(listTransactions, async (c) => {
    const q = c.req.valid('query');
    const customerId = actingCustomer(c.get('auth'), q.customerId);
    const from = q.from ? new Date(q.from) : null;
    const to = q.to ? new Date(q.to) : null;
    if (from && to && from >= to) {
      throw new ApiError(400, 'invalid_request', 'from: must be earlier than to.');
    }
    const before = q.cursor ? decodeCursor(q.cursor) : null;
    const wallet = await walletOf(customerId);
    const rows = await db.sql<
      {
        posting_id: string;
        entry_id: string;
        type: string;
        amount: string;
        balance_after: string;
        description: string;
        created_at: Date | string;
      }[]
    >`
      select p.id as posting_id, e.id as entry_id, e.type, p.amount, p.balance_after,
             e.description, e.created_at
      from postings p join entries e on e.id = p.entry_id
      where p.account_id = ${wallet.id}
        ${q.type ? db.sql`and e.type = ${q.type}` : db.sql``}
        ${from ? db.sql`and e.created_at >= ${from.toISOString()}::timestamptz` : db.sql``}
        ${to ? db.sql`and e.created_at < ${to.toISOString()}::timestamptz` : db.sql``}
        ${before !== null ? db.sql`and p.id < ${before}` : db.sql``}
      order by p.id desc
      limit ${q.limit + 1}`;
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    const shares = await sharesByEntry(
      db.sql,
      customerId,
      page.map((r) => Number(r.entry_id)),
    );
    return c.json(
      {
        items: page.map((r) => ({
          id: Number(r.entry_id),
          type: r.type,
          amount: jsonBalance(r.amount),
          balanceAfter: jsonBalance(r.balance_after),
          description: r.description,
          createdAt: toDate(r.created_at).toISOString(),
          grants: shares.get(Number(r.entry_id)) ?? [],
        })),
        nextCursor: rows.length > q.limit && last ? encodeCursor(Number(last.posting_id)) : null,
      },
      200,
    );
  });

  /** Pushes each balance change as it commits (LISTEN/NOTIFY, not polling). */
  app.openapi(walletEvents, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    await walletOf(customerId); // 404 before the stream opens
    const release = streamSlots.acquire(customerId);
    if (release === 'customer') {
      return c.json(
        errorBody(
          'too_many_streams',
          'This customer already has as many open event streams as allowed; close one (or wait) and retry.',
        ),
        429,
        { 'Retry-After': String(STREAMS_RETRY_AFTER_SECONDS) },
      );
    }
    if (release === 'process') {
      return c.json(
        errorBody(
          'stream_capacity_reached',
          'This API process holds as many open event streams as it allows; retry shortly (another instance may take it).',
        ),
        503,
        { 'Retry-After': String(STREAMS_RETRY_AFTER_SECONDS) },
      );
    }
    return streamSSE(c, async (stream) => {
      // Given back as soon as the client goes away, not when the loop notices.
      stream.onAbort(release);
      const queue: WalletEvent[] = [];
      let wake: (() => void) | undefined;
      let unsubscribe: (() => void) | undefined;
      let open = true;
      const end = () => {
        open = false;
        wake?.();
      };
      stream.onAbort(end);
      // A stopping API ends its streams (the client reconnects elsewhere) rather than wait on them.
      shutdownSignal?.addEventListener('abort', end, { once: true });
      if (shutdownSignal?.aborted) end();
      try {
        unsubscribe = await hub.subscribe(customerId, (event) => {
          queue.push(event);
          wake?.();
        });
        // FOR SHARE waits for a posting that holds the wallet and may have looked for
        // listeners before this stream registered: its balance is in this first read.
        const current = await walletOf(customerId, true);
        await stream.writeSSE({
          event: 'balance',
          data: JSON.stringify({
            balance: current.balance,
            entry: null,
            at: new Date().toISOString(),
          }),
        });
        while (open) {
          const next = queue.shift();
          if (next) {
            await stream.writeSSE({
              event: 'balance',
              id: String(next.entry.id),
              data: JSON.stringify({ balance: next.balance, entry: next.entry, at: next.at }),
            });
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, HEARTBEAT_MS);
          });
          wake = undefined;
          if (queue.length === 0 && open) await stream.write(': keep-alive\n\n');
        }
      } finally {
        shutdownSignal?.removeEventListener('abort', end);
        unsubscribe?.();
        release();
      }
    });
  });

  return app;
}
