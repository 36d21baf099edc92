// One scenario's mixed load: top-ups paid through signed Stripe webhooks (some refunded), phone
// verifications that complete, time out or are cancelled (some completed ones refunded as
// goodwill), orders where several buyers want the same item, and optionally a hot wallet. Every
// flow is recorded with the workflow id it started, so the outcome can be checked exactly.
import { randomBytes } from 'node:crypto';
import { workflowIds } from '../src/shared.js';
import { fundedCustomers, pool } from '../src/stack/load.js';
import { createLedger } from '../src/ledger/ledger.js';
import { ChaosDriver, StatusWatcher } from './driver.js';

/** How many flows of each kind one scenario runs. */
export interface LoadPlan {
  topups: number;
  /** Of the top-ups, refunded once credited (POST /v1/refunds { paymentId }). */
  topupRefunds: number;
  completes: number;
  /** Of the completed verifications, refunded as goodwill by an operator. */
  goodwill: number;
  timeouts: number;
  cancels: number;
  /** Items several buyers try to buy at once; each buyer orders one item. */
  contestedItems: number;
  buyersPerItem: number;
  /** Concurrent debits on one wallet covering half of them (0: none). */
  hotDebits: number;
}

/** A plan of about `workflows` workflows (each refund and each order is a workflow too). */
export function planFor(workflows: number, hotDebits = 0): LoadPlan {
  const share = (fraction: number) => Math.max(1, Math.round(workflows * fraction));
  const topups = share(0.2);
  const completes = share(0.2);
  return {
    topups,
    topupRefunds: Math.max(1, Math.round(topups / 4)),
    completes,
    goodwill: Math.max(1, Math.round(completes / 4)),
    timeouts: share(0.15),
    cancels: share(0.15),
    contestedItems: Math.max(1, Math.round(share(0.2) / 3)),
    buyersPerItem: 3,
    hotDebits,
  };
}

/** Workflows a plan starts. */
export const plannedWorkflows = (p: LoadPlan) =>
  p.topups +
  p.topupRefunds +
  p.completes +
  p.goodwill +
  p.timeouts +
  p.cancels +
  p.contestedItems * p.buyersPerItem +
  p.hotDebits;

export interface TopupFlow {
  customerId: string;
  paymentId: string;
  workflowId: string;
  refund?: { refundId: string; workflowId: string };
}

export type VerificationOutcome = 'complete' | 'timeout' | 'cancel';

export interface VerificationFlow {
  customerId: string;
  id: string;
  workflowId: string;
  outcome: VerificationOutcome;
  goodwill?: { refundId: string; workflowId: string };
}

export interface OrderFlow {
  buyerId: string;
  orderId: string;
  workflowId: string;
  /** The API's first answer (202, or the refusal's status). */
  answer: number;
}

export interface ContestedItem {
  itemId: string;
  price: number;
  sellerId: string;
  orders: OrderFlow[];
}

export interface HotWallet {
  customerId: string;
  funded: number;
  debits: Array<{ id: string; workflowId: string; answer: number }>;
}

/** What the load did: every flow, every customer's starting credits, and what went wrong. */
export interface LoadRecord {
  price: number;
  service: string;
  topups: TopupFlow[];
  verifications: VerificationFlow[];
  items: ContestedItem[];
  hot: HotWallet | undefined;
  /** Credits each customer started with. */
  funded: Map<string, number>;
  /** Stripe events made (each delivered 1–5 times in a storm). */
  stripeEvents: number;
  /** Flows the driver could not play to the end (a call never answered, an odd answer). */
  errors: string[];
}

export interface LoadOptions {
  /** Deliver each Stripe event 1–5 times, shuffled with the others, concurrently. */
  storm: boolean;
  /** Flows in flight at once. */
  concurrency: number;
  /** Start the flows evenly over this long, so the load lasts as long as the fault does. */
  spreadMs: number;
  /** A label for ids and e-mails. */
  label: string;
}

const ITEM_PRICE = 40;
const BUYER_CREDITS = 1_000;
const SHORT_TIMEOUT_SECONDS = 3;
const LONG_TIMEOUT_SECONDS = 900;

const key = (what: string) => `chaos-${what}-${randomBytes(8).toString('hex')}`;
const shuffle = <T>(items: T[]): T[] => {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
};
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Stripe during a webhook storm: events pile up for a moment, then every one is sent 1–5 times,
 * all copies shuffled together and delivered at once.
 */
class Storm {
  private queue: string[] = [];
  private readonly flights: Array<Promise<unknown>> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly driver: ChaosDriver,
    private readonly errors: string[],
  ) {}

  add(body: string) {
    this.queue.push(body);
    this.timer ??= setTimeout(() => this.flush(), 250);
  }

  private flush() {
    this.timer = undefined;
    const copies = shuffle(
      this.queue
        .splice(0)
        .flatMap((body) => Array.from({ length: 1 + Math.floor(Math.random() * 5) }, () => body)),
    );
    this.flights.push(
      Promise.all(
        copies.map((body) =>
          this.driver.deliverStripe(body).catch((err: unknown) => {
            this.errors.push(`storm delivery: ${(err as Error).message}`);
          }),
        ),
      ),
    );
  }

  async drain() {
    if (this.timer) {
      clearTimeout(this.timer);
      this.flush();
    }
    await Promise.all(this.flights);
  }
}

/** Runs one scenario's load to the end of its flows (not of its workflows). */
export async function runLoad(
  driver: ChaosDriver,
  plan: LoadPlan,
  options: LoadOptions,
): Promise<LoadRecord> {
  const { sql } = driver;
  const ledger = createLedger(sql);
  const errors: string[] = [];
  const service = `chaos-${options.label}-${randomBytes(3).toString('hex')}`.slice(0, 40);
  const price = 10;
  const set = await driver.call('PUT', `/v1/admin/prices/${service}/US`, {
    token: driver.adminToken,
    body: { price },
  });
  if (set.status !== 200) throw new Error(`setting the price: ${set.status}`);

  const verificationCount = plan.completes + plan.timeouts + plan.cancels;
  const [topupIds, verifierIds, buyerIds, sellerIds, hotIds] = await Promise.all([
    fundedCustomers(sql, ledger, {
      count: plan.topups,
      credits: 0,
      label: `chaos-${options.label}`,
    }),
    fundedCustomers(sql, ledger, {
      count: verificationCount,
      credits: price,
      label: `chaos-${options.label}`,
    }),
    fundedCustomers(sql, ledger, {
      count: plan.contestedItems * plan.buyersPerItem,
      credits: BUYER_CREDITS,
      label: `chaos-${options.label}`,
    }),
    fundedCustomers(sql, ledger, {
      count: plan.contestedItems,
      credits: 0,
      label: `chaos-${options.label}`,
    }),
    plan.hotDebits > 0
      ? fundedCustomers(sql, ledger, {
          count: 1,
          credits: (plan.hotDebits / 2) * price,
          label: `chaos-${options.label}-hot`,
        })
      : Promise.resolve([]),
  ]);
  const funded = new Map<string, number>();
  for (const id of topupIds) funded.set(id, 0);
  for (const id of verifierIds) funded.set(id, price);
  for (const id of buyerIds) funded.set(id, BUYER_CREDITS);
  for (const id of sellerIds) funded.set(id, 0);
  for (const id of hotIds) funded.set(id, (plan.hotDebits / 2) * price);

  const tokens = new Map<string, string>();
  await pool([...funded.keys()], 16, async (id) => {
    tokens.set(id, await driver.customerToken(id));
  });
  const token = (id: string) => tokens.get(id)!;

  // The items on sale, listed by their sellers before the rush.
  const items: ContestedItem[] = [];
  await pool(sellerIds, 8, async (sellerId, i) => {
    const listed = await driver.call('POST', '/v1/items', {
      token: token(sellerId),
      body: { title: `chaos item ${i}`, price: ITEM_PRICE },
    });
    if (listed.status !== 201) throw new Error(`listing an item: ${listed.status}`);
    items.push({ itemId: listed.body['id'] as string, price: ITEM_PRICE, sellerId, orders: [] });
  });

  const payments = new StatusWatcher(sql, 'payments');
  const verifications = new StatusWatcher(sql, 'verifications');
  const storm = options.storm ? new Storm(driver, errors) : undefined;
  let stripeEvents = 0;

  const topups: TopupFlow[] = [];
  const topupFlow = async (customerId: string, refund: boolean) => {
    const k = key('topup');
    const paymentId = ChaosDriver.flowId('pay', customerId, k);
    const flow: TopupFlow = { customerId, paymentId, workflowId: workflowIds.checkout(paymentId) };
    topups.push(flow);
    const opened = await driver.call('POST', '/v1/checkouts', {
      token: token(customerId),
      body: { pack: 'small' },
      key: k,
    });
    if (opened.status !== 202) throw new Error(`checkout ${paymentId}: ${opened.status}`);
    // The session exists at Stripe once the workflow opened it (the 202 may come before).
    for (let waited = 0; !driver.stripe.sessions.has(paymentId); waited += 200) {
      if (waited > 180_000) throw new Error(`checkout ${paymentId}: no Stripe session`);
      await pause(200);
    }
    const event = driver.paidEvent(paymentId);
    stripeEvents++;
    if (storm) storm.add(event);
    else await driver.deliverStripe(event);
    if (!refund) return;
    await payments.until(paymentId, (s) => s === 'credited');
    const rk = key('refund');
    const refundId = ChaosDriver.flowId('rfd', customerId, rk);
    flow.refund = { refundId, workflowId: workflowIds.refund(refundId) };
    const asked = await driver.call('POST', '/v1/refunds', {
      token: token(customerId),
      body: { paymentId, reason: 'chaos suite: top-up refund' },
      key: rk,
    });
    if (asked.status !== 202) {
      throw new Error(`refund of ${paymentId}: ${asked.status} ${JSON.stringify(asked.body)}`);
    }
  };

  const verificationFlows: VerificationFlow[] = [];
  const verificationFlow = async (
    customerId: string,
    outcome: VerificationOutcome,
    goodwill: boolean,
  ) => {
    const k = key('verification');
    const id = ChaosDriver.flowId('ver', customerId, k);
    const flow: VerificationFlow = {
      customerId,
      id,
      workflowId: workflowIds.verification(id),
      outcome,
    };
    verificationFlows.push(flow);
    const bought = await driver.call('POST', '/v1/verifications', {
      token: token(customerId),
      body: {
        service,
        country: 'US',
        timeoutSeconds: outcome === 'timeout' ? SHORT_TIMEOUT_SECONDS : LONG_TIMEOUT_SECONDS,
      },
      key: k,
    });
    if (bought.status !== 202) {
      throw new Error(`verification ${id}: ${bought.status} ${JSON.stringify(bought.body)}`);
    }
    if (outcome === 'timeout') return;
    const status = await verifications.until(id, (s) => s !== 'pending');
    // The provider step has a bounded time (its tries within about a minute); past it the
    // customer is refunded rather than kept waiting, which a storm of faults can cause. Whether
    // that refund was booked once, with that reason, is checked at the end.
    if (status === 'refunded') return;
    if (status !== 'active') throw new Error(`verification ${id}: ${status} before its ${outcome}`);
    if (outcome === 'cancel') {
      const cancelled = await driver.call('POST', `/v1/verifications/${id}/cancel`, {
        token: token(customerId),
      });
      // A cancel has no key: when a retry follows one whose answer was lost (the API gave up
      // waiting for a worker that had died), it finds the verification closed. Whether it was
      // this cancel that closed it (reason `cancelled`, one refund) is checked at the end.
      const closed =
        cancelled.status === 409 &&
        (cancelled.body['error'] as { code?: string } | undefined)?.code === 'verification_closed';
      if (cancelled.status !== 200 && !closed) {
        throw new Error(`cancel of ${id}: ${cancelled.status} ${JSON.stringify(cancelled.body)}`);
      }
      return;
    }
    const delivered = await driver.deliverCode(id);
    if (delivered.status !== 200) throw new Error(`code for ${id}: ${delivered.status}`);
    if (!goodwill) return;
    await verifications.until(id, (s) => s === 'completed');
    const rk = key('goodwill');
    const refundId = ChaosDriver.flowId('rfd', driver.adminId, rk);
    flow.goodwill = { refundId, workflowId: workflowIds.refund(refundId) };
    const asked = await driver.call('POST', '/v1/refunds', {
      token: driver.adminToken,
      body: { verificationId: id, reason: 'chaos suite: goodwill' },
      key: rk,
    });
    if (asked.status !== 202) {
      throw new Error(`goodwill refund of ${id}: ${asked.status} ${JSON.stringify(asked.body)}`);
    }
  };

  const orderFlow = async (item: ContestedItem, buyerId: string) => {
    const k = key('order');
    const orderId = ChaosDriver.flowId('ord', buyerId, k);
    const flow: OrderFlow = { buyerId, orderId, workflowId: workflowIds.order(orderId), answer: 0 };
    item.orders.push(flow);
    const ordered = await driver.call('POST', '/v1/orders', {
      token: token(buyerId),
      body: { itemIds: [item.itemId] },
      key: k,
    });
    flow.answer = ordered.status;
    // The losers may be refused up front (the item is gone): still a workflow that ran.
    if (ordered.status !== 202 && ordered.status !== 409 && ordered.status !== 422) {
      throw new Error(`order ${orderId}: ${ordered.status} ${JSON.stringify(ordered.body)}`);
    }
  };

  // Every flow, shuffled so kinds interleave; a contested item's buyers go out together.
  const flows: Array<() => Promise<void>> = [];
  topupIds.forEach((id, i) => flows.push(() => topupFlow(id, i < plan.topupRefunds)));
  const outcomes: VerificationOutcome[] = [
    ...Array<VerificationOutcome>(plan.completes).fill('complete'),
    ...Array<VerificationOutcome>(plan.timeouts).fill('timeout'),
    ...Array<VerificationOutcome>(plan.cancels).fill('cancel'),
  ];
  verifierIds.forEach((id, i) =>
    flows.push(() => verificationFlow(id, outcomes[i]!, i < plan.goodwill)),
  );
  items.forEach((item, i) => {
    const buyers = buyerIds.slice(i * plan.buyersPerItem, (i + 1) * plan.buyersPerItem);
    flows.push(() =>
      Promise.all(buyers.map((buyerId) => orderFlow(item, buyerId))).then(() => undefined),
    );
  });
  shuffle(flows);

  let hot: HotWallet | undefined;
  const hotRush = async () => {
    const customerId = hotIds[0]!;
    hot = { customerId, funded: funded.get(customerId)!, debits: [] };
    const debits = hot.debits;
    // All at once: the wallet covers half of them.
    await Promise.all(
      Array.from({ length: plan.hotDebits }, async () => {
        const k = key('hot');
        const id = ChaosDriver.flowId('ver', customerId, k);
        const debit = { id, workflowId: workflowIds.verification(id), answer: 0 };
        debits.push(debit);
        const bought = await driver.call('POST', '/v1/verifications', {
          token: token(customerId),
          body: { service, country: 'US', timeoutSeconds: LONG_TIMEOUT_SECONDS },
          key: k,
        });
        debit.answer = bought.status;
        if (bought.status !== 202 && bought.status !== 422) {
          throw new Error(`hot debit ${id}: ${bought.status} ${JSON.stringify(bought.body)}`);
        }
      }),
    );
    // Every purchase that got its number receives its code, so every workflow closes.
    await Promise.all(
      debits.map(async (debit) => {
        const status = await verifications.until(debit.id, (s) => s !== 'pending');
        if (status === 'active') {
          const delivered = await driver.deliverCode(debit.id);
          if (delivered.status !== 200)
            throw new Error(`code for ${debit.id}: ${delivered.status}`);
        }
      }),
    );
  };

  const began = Date.now();
  const gap = flows.length > 0 ? options.spreadMs / flows.length : 0;
  const run = (flow: () => Promise<void>) =>
    flow().catch((err: unknown) => {
      errors.push((err as Error).message);
    });
  await Promise.all([
    pool(flows, options.concurrency, async (flow, i) => {
      const due = began + i * gap;
      if (Date.now() < due) await pause(due - Date.now());
      await run(flow);
    }),
    plan.hotDebits > 0 ? run(hotRush) : Promise.resolve(),
  ]);
  await storm?.drain();

  return {
    price,
    service,
    topups,
    verifications: verificationFlows,
    items,
    hot,
    funded,
    stripeEvents,
    errors,
  };
}
