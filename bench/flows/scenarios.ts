// The flow benchmarks' measurements. Each one drives the real flow through the API (HTTP, signed
// webhooks) and a baseline through Temporal alone, on the same server and worker settings, and
// reports both so the figure is the ratio between them.
import { Client, Connection, WithStartWorkflowOperation } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time.js';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import postgres from 'postgres';
import { mintToken } from '../../src/api/auth.js';
import { signSmsBody } from '../../src/api/webhooks/sms.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { debitSettledUpdate } from '../../src/shared.js';
import { fundedCustomers, pool } from '../../src/stack/load.js';
import { stripeEvent, stripeSignature } from '../../src/stack/stripe-double.js';
import { checkoutMetadata } from '../../src/stripe/gateway.js';
import { bare } from './bare-contract.js';
import type { FlowStack, Say } from './stack.js';
import { cpuSnapshot, cpuSpent, type CpuByPart } from './cpu.js';
import { summarise, type Summary } from './stats.js';

/** What the API answers a purchase with (POST /v1/verifications, 202). */
interface Started {
  id: string;
  workflowId: string;
  status: string;
}

export interface Customer {
  id: string;
  token: string;
}

const SERVICE = { service: 'whatsapp', country: 'US' } as const;
/** Long enough that no purchase of the throughput runs times out while it is measured. */
const LONG_TIMEOUT_SECONDS = 3_600;

type HistoryEvent = NonNullable<
  Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>['events']
>[number];

/** The completion of the activity `scheduled` scheduled, if it completed. */
function completionOf(events: HistoryEvent[], scheduled: HistoryEvent): HistoryEvent | undefined {
  return events.find(
    (e) =>
      e.activityTaskCompletedEventAttributes &&
      Number(e.activityTaskCompletedEventAttributes.scheduledEventId) === Number(scheduled.eventId),
  );
}

export class Driver {
  readonly sql: postgres.Sql;
  readonly ledger: Ledger;
  price = 0;

  private constructor(
    readonly stack: FlowStack,
    readonly temporal: Client,
    readonly say: Say,
  ) {
    this.sql = postgres(stack.ownerUrl, { max: 8, onnotice: () => undefined });
    this.ledger = createLedger(this.sql);
  }

  static async connect(stack: FlowStack, say: Say): Promise<Driver> {
    const connection = await Connection.connect({ address: stack.temporalAddress });
    const driver = new Driver(stack, new Client({ connection, namespace: stack.namespace }), say);
    const [row] = await driver.sql<{ price: string }[]>`
      select price from prices where service = ${SERVICE.service} and country = ${SERVICE.country}`;
    driver.price = Number(row!.price);
    return driver;
  }

  async close(): Promise<void> {
    await this.temporal.connection.close();
    await this.sql.end({ timeout: 5 });
  }

  /** Customers with wallets, in one statement; `credits` each through the real posting. */
  async customers(count: number, credits: number): Promise<Customer[]> {
    const ids = await fundedCustomers(this.sql, this.ledger, {
      count,
      credits,
      label: 'flowbench',
    });
    return Promise.all(
      ids.map(async (id) => ({
        id,
        token: await mintToken(this.stack.jwtSecret, { sub: id, role: 'customer' }),
      })),
    );
  }

  /** Pre-loads wallets (without postings) until the ledger holds `total` of them. */
  async preloadWallets(total: number): Promise<number> {
    const [row] = await this.sql<{ n: string }[]>`
      select count(*) as n from accounts where kind = 'wallet'`;
    const missing = total - Number(row!.n);
    const batch = 20_000;
    for (let done = 0; done < missing; done += batch) {
      await this.customers(Math.min(batch, missing - done), 0);
    }
    await this.sql`analyze customers`;
    await this.sql`analyze accounts`;
    return Math.max(0, missing);
  }

  /** CPU seconds so far by part of the stack (with this database's PostgreSQL backends). */
  async cpu(): Promise<CpuByPart | undefined> {
    const rows = await this.sql<{ pid: number }[]>`
      select pid from pg_stat_activity where datname = current_database()`;
    return cpuSnapshot(rows.map((r) => r.pid));
  }

  async balance(customerId: string): Promise<number> {
    const [row] = await this.sql<{ balance: string }[]>`
      select balance from accounts where kind = 'wallet' and customer_id = ${customerId}`;
    return Number(row!.balance);
  }

  private async post(path: string, init: RequestInit): Promise<Response> {
    return fetch(`${this.stack.apiUrl}${path}`, init);
  }

  /** POST /v1/verifications; resolves with the answer's status and body. */
  async buyVerification(
    customer: Customer,
    timeoutSeconds = LONG_TIMEOUT_SECONDS,
  ): Promise<{ status: number; body: Started | { error: { code: string } } }> {
    const res = await this.post('/v1/verifications', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${customer.token}`,
        'content-type': 'application/json',
        'idempotency-key': randomUUID(),
      },
      body: JSON.stringify({ ...SERVICE, timeoutSeconds }),
    });
    return { status: res.status, body: (await res.json()) as Started };
  }

  /**
   * A purchase's debit, settled: the API answers once it is (or 202 pending after its own wait,
   * when the debit is then awaited through the workflow's update).
   */
  async debitOutcome(customer: Customer): Promise<string> {
    const { status, body } = await this.buyVerification(customer);
    if (status === 422) return (body as { error: { code: string } }).error.code;
    if (status !== 202) return `http_${status}`;
    const started = body as Started;
    if (started.status !== 'pending') return 'debited';
    try {
      await this.temporal.workflow.getHandle(started.workflowId).executeUpdate(debitSettledUpdate);
      return 'debited';
    } catch (err) {
      const cause = (err as { cause?: { type?: string } }).cause;
      if (cause?.type) return cause.type;
      // Closed before the update reached it (a refused purchase): its state says why.
      const res = await fetch(`${this.stack.apiUrl}/v1/verifications/${started.id}`, {
        headers: { authorization: `Bearer ${customer.token}` },
      });
      const state = (await res.json()) as { status?: string; error?: { code: string } };
      if (state.status === 'failed') return state.error?.code ?? 'failed';
      return state.status === 'pending' ? 'error' : 'debited';
    }
  }

  /** Events and workflow tasks in a closed run's history: the round trips a flow costs. */
  async historyShape(workflowId: string): Promise<{ events: number; workflowTasks: number }> {
    const history = await this.temporal.workflow.getHandle(workflowId).fetchHistory();
    const events = history.events ?? [];
    return {
      events: events.length,
      workflowTasks: events.filter((e) => e.workflowTaskCompletedEventAttributes).length,
    };
  }

  /**
   * How long after its timeout expired a timed-out purchase was refunded, read from its Temporal
   * history so the real flow and the baseline are measured alike: from the timer's start plus the
   * timeout to the completion of the first step scheduled after the timer fired (the refund).
   * The steps before the timer (renting the number) and after the refund (releasing it, closing
   * the run) are not part of it. Also how late the timer itself fired.
   */
  async timeoutRefundDelay(
    workflowId: string,
    timeoutMs: number,
  ): Promise<{ refundMs: number; timerLateMs: number }> {
    const history = await this.temporal.workflow.getHandle(workflowId).fetchHistory();
    const events = history.events ?? [];
    const id = (e: (typeof events)[number]) => Number(e.eventId);
    const started = events.find((e) => e.timerStartedEventAttributes);
    const fired = events.find((e) => e.timerFiredEventAttributes);
    if (!started || !fired) throw new Error(`${workflowId}: no timer fired in its history`);
    const refund = events.find((e) => e.activityTaskScheduledEventAttributes && id(e) > id(fired));
    const done = refund && completionOf(events, refund);
    if (!done) throw new Error(`${workflowId}: no step completed after its timer fired`);
    const expired = tsToMs(started.eventTime) + timeoutMs;
    return {
      refundMs: tsToMs(done.eventTime) - expired,
      timerLateMs: tsToMs(fired.eventTime) - expired,
    };
  }

  /**
   * When the step that credits completed (epoch ms, the server's clock): the top-up's
   * creditTopup, or the baseline's last no-op step (its "credit"). The workflow closes after it
   * with bookkeeping that does not move money.
   */
  async creditedAt(workflowId: string, activity: 'creditTopup' | 'last'): Promise<number> {
    const history = await this.temporal.workflow.getHandle(workflowId).fetchHistory();
    const events = history.events ?? [];
    const scheduled = events.filter(
      (e) =>
        e.activityTaskScheduledEventAttributes &&
        (activity === 'last' ||
          e.activityTaskScheduledEventAttributes.activityType?.name === activity),
    );
    const step = scheduled[scheduled.length - 1];
    const done = step && completionOf(events, step);
    if (!done) throw new Error(`${workflowId}: no completed ${activity} step in its history`);
    return tsToMs(done.eventTime);
  }

  async started(customer: Customer, timeoutSeconds?: number): Promise<Started> {
    const { status, body } = await this.buyVerification(customer, timeoutSeconds);
    if (status !== 202)
      throw new Error(`POST /v1/verifications: ${status} ${JSON.stringify(body)}`);
    return body as Started;
  }

  /** The SMS provider's signed webhook with the code. */
  async deliverCode(verificationId: string): Promise<void> {
    const body = JSON.stringify({ verificationId, code: '424242' });
    const res = await this.post('/webhooks/sms', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-signature': signSmsBody(this.stack.smsWebhookSecret, body),
      },
      body,
    });
    if (res.status !== 200)
      throw new Error(`POST /webhooks/sms: ${res.status} ${await res.text()}`);
  }

  /** The workflow's result, with its status when it returns a state. */
  async outcome(workflowId: string): Promise<string> {
    const result: unknown = await this.temporal.workflow.getHandle(workflowId).result();
    return (result as { status?: string } | null)?.status ?? String(result);
  }

  /** The last purchase (real or baseline) that completed, for its history's shape. */
  lastPurchase: { app?: string; bare?: string } = {};
  /** Milliseconds from the call to the settled debit (POST 202, or the baseline's update). */
  startLatencies = { app: [] as number[], bare: [] as number[] };

  /** One purchase end to end: API call → debit → code → completed. */
  async purchase(customer: Customer): Promise<void> {
    const t0 = performance.now();
    const started = await this.started(customer);
    this.startLatencies.app.push(performance.now() - t0);
    await this.deliverCode(started.id);
    const status = await this.outcome(started.workflowId);
    if (status !== 'completed') throw new Error(`verification ${started.id} ended ${status}`);
    this.lastPurchase.app = started.workflowId;
  }

  /** The baseline's start: update-with-start answering once the first no-op step ran. */
  async startBare(type: string, timeoutSeconds: number): Promise<string> {
    const workflowId = `flowbench-bare-${randomUUID()}`;
    const start = new WithStartWorkflowOperation(type, {
      taskQueue: this.stack.bareTaskQueue,
      workflowId,
      args: [timeoutSeconds],
      workflowIdConflictPolicy: 'FAIL',
    });
    await this.temporal.workflow.executeUpdateWithStart(bare.settledUpdate, {
      startWorkflowOperation: start,
    });
    return workflowId;
  }

  async signalBare(workflowId: string): Promise<void> {
    await this.temporal.workflow.getHandle(workflowId).signal(bare.eventSignal, 'event');
  }

  /** One baseline run: start, first step, signal, remaining steps, closed. */
  async barePurchase(): Promise<void> {
    const t0 = performance.now();
    const workflowId = await this.startBare(bare.verification, LONG_TIMEOUT_SECONDS);
    this.startLatencies.bare.push(performance.now() - t0);
    await this.signalBare(workflowId);
    await this.outcome(workflowId);
    this.lastPurchase.bare = workflowId;
  }

  /** POST /v1/checkouts; the payment as recorded once its Stripe session exists. */
  async openCheckout(customer: Customer): Promise<string> {
    const res = await this.post('/v1/checkouts', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${customer.token}`,
        'content-type': 'application/json',
        'idempotency-key': randomUUID(),
      },
      body: JSON.stringify({ pack: 'small' }),
    });
    const body = (await res.json()) as { id: string; status: string };
    if (res.status !== 202)
      throw new Error(`POST /v1/checkouts: ${res.status} ${JSON.stringify(body)}`);
    return body.id;
  }

  /** Stripe's checkout.session.completed for a recorded payment, signed with the API's secret. */
  async paidEvent(
    paymentId: string,
  ): Promise<{ workflowId: string; body: string; signature: string }> {
    const [p] = await this.sql<
      {
        workflow_id: string;
        customer_id: string;
        pack: string;
        credits: string;
        amount: string;
        currency: string;
        stripe_session_id: string;
        payment_intent_id: string | null;
      }[]
    >`select workflow_id, customer_id, pack, credits, amount, currency, stripe_session_id,
             payment_intent_id
      from payments where id = ${paymentId}`;
    if (!p) throw new Error(`payment ${paymentId} is not recorded`);
    const request = {
      paymentId,
      workflowId: p.workflow_id,
      customerId: p.customer_id,
      pack: p.pack,
      credits: Number(p.credits),
      amount: Number(p.amount),
      currency: p.currency,
    };
    const event = stripeEvent(
      'checkout.session.completed',
      {
        id: p.stripe_session_id,
        object: 'checkout.session',
        mode: 'payment',
        client_reference_id: paymentId,
        metadata: checkoutMetadata(request),
        amount_total: request.amount,
        currency: request.currency,
        payment_intent: p.payment_intent_id ?? `pi_flowbench_${randomUUID().replace(/-/g, '')}`,
        status: 'complete',
        payment_status: 'paid',
        url: null,
      },
      `evt_flowbench_${randomUUID().replace(/-/g, '')}`,
    );
    const body = JSON.stringify(event);
    const signature = stripeSignature(body, this.stack.stripeWebhookSecret);
    return { workflowId: p.workflow_id, body, signature };
  }

  async deliverStripe(body: string, signature: string): Promise<void> {
    const res = await this.post('/webhooks/stripe', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      body,
    });
    if (res.status !== 200)
      throw new Error(`POST /webhooks/stripe: ${res.status} ${await res.text()}`);
  }
}

export { pool };

export interface Errors {
  count: number;
  first?: string;
}

const note = (errors: Errors, err: unknown) => {
  errors.count++;
  errors.first ??= err instanceof Error ? err.message : String(err);
};

/**
 * Two closed-loop runs interleaved in `rounds` slices (baseline, then app, each round), so a
 * burst of other work on a shared machine lands on both sides rather than on one.
 */
export async function alternating(
  clients: number,
  seconds: number,
  warmupSeconds: number,
  rounds: number,
  baselineOp: () => Promise<void>,
  appOp: () => Promise<void>,
  meter?: () => Promise<CpuByPart | undefined>,
): Promise<{
  baseline: LoopSummary;
  app: LoopSummary;
  cpu?: { baseline: CpuByPart; app: CpuByPart };
}> {
  const slice = seconds / rounds;
  const runs = { baseline: [] as LoopSlice[], app: [] as LoopSlice[] };
  const cpu = { baseline: {} as CpuByPart, app: {} as CpuByPart };
  let metered = Boolean(meter);
  const metering = async (side: 'baseline' | 'app', run: () => Promise<LoopSlice>) => {
    const before = metered ? await meter!() : undefined;
    const result = await run();
    const after = metered ? await meter!() : undefined;
    if (before && after) {
      for (const [k, v] of Object.entries(cpuSpent(before, after))) {
        cpu[side][k] = (cpu[side][k] ?? 0) + v;
      }
    } else {
      metered = false;
    }
    return result;
  };
  if (warmupSeconds > 0) {
    await loopSlice(clients, warmupSeconds, baselineOp);
    await loopSlice(clients, warmupSeconds, appOp);
  }
  for (let i = 0; i < rounds; i++) {
    runs.baseline.push(await metering('baseline', () => loopSlice(clients, slice, baselineOp)));
    runs.app.push(await metering('app', () => loopSlice(clients, slice, appOp)));
  }
  const merge = (slices: LoopSlice[]): LoopSummary => ({
    ...summarise(
      slices.flatMap((x) => x.latencies),
      slices.reduce((n, x) => n + x.errors.count, 0),
      slices.reduce((n, x) => n + x.seconds, 0),
    ),
    firstError: slices.find((x) => x.errors.first)?.errors.first,
  });
  return {
    baseline: merge(runs.baseline),
    app: merge(runs.app),
    ...(metered ? { cpu } : {}),
  };
}

export type LoopSummary = Summary & { firstError?: string | undefined };

interface LoopSlice {
  latencies: number[];
  errors: Errors;
  seconds: number;
}

/** `clients` loops calling `op` back to back for `seconds`; wall time to the last one's end. */
async function loopSlice(
  clients: number,
  seconds: number,
  op: () => Promise<void>,
): Promise<LoopSlice> {
  const errors: Errors = { count: 0 };
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await op();
          latencies.push(performance.now() - t0);
        } catch (err) {
          note(errors, err);
        }
      }
    }),
  );
  return { latencies, errors, seconds: (performance.now() - start) / 1000 };
}

/**
 * Fires `fire(i)` at a fixed rate (open loop: a slow answer does not slow the next send) and
 * measures from each send to its `done(i)`.
 */
export async function fixedRate(
  count: number,
  perSecond: number,
  fire: (i: number) => Promise<void>,
  done: (i: number) => Promise<void>,
): Promise<Summary & { firstError?: string; lagMs: number }> {
  const errors: Errors = { count: 0 };
  const latencies: number[] = [];
  const start = performance.now();
  let lagMs = 0;
  const runs: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    lagMs = Math.max(lagMs, performance.now() - due);
    const t0 = performance.now();
    runs.push(
      (async () => {
        try {
          await Promise.all([fire(i), done(i)]);
          latencies.push(performance.now() - t0);
        } catch (err) {
          note(errors, err);
        }
      })(),
    );
  }
  await Promise.all(runs);
  return {
    ...summarise(latencies, errors.count, (performance.now() - start) / 1000),
    firstError: errors.first,
    lagMs,
  };
}
