// The chaos suite's client: it plays customers, an operator, Stripe and the SMS provider against
// the production stack, only through what they would use (the HTTP API and signed webhooks).
// A call that meets a dead process or a refusal to start (5xx, a reset connection) is retried
// with the same Idempotency-Key until it is answered, as a careful client would, so every flow's
// workflow id is known from the customer and the key whether or not an answer ever came back.
import { randomBytes } from 'node:crypto';
import type postgres from 'postgres';
import { mintToken } from '../src/api/auth.js';
import { flowIdFor } from '../src/api/common.js';
import { signSmsBody } from '../src/api/webhooks/sms.js';
import type { ProdStack } from '../src/stack/prod.js';
import {
  sessionObject,
  stripeEvent,
  stripeSignature,
  type StripeDouble,
} from '../src/stack/stripe-double.js';

export interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** How long one call is retried before the flow gives up on it (and the scenario fails). */
const CALL_DEADLINE_MS = 180_000;

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Counts of what the driver sent and how the service answered. */
export interface Traffic {
  requests: number;
  /** Calls sent again after a 5xx, a 429 or a broken connection (same key). */
  retries: number;
  stripeDeliveries: number;
  /** Deliveries the API answered as an event it had already processed. */
  stripeDuplicateAnswers: number;
}

export class ChaosDriver {
  readonly traffic: Traffic = {
    requests: 0,
    retries: 0,
    stripeDeliveries: 0,
    stripeDuplicateAnswers: 0,
  };
  private turn = 0;

  private constructor(
    readonly stack: ProdStack,
    readonly stripe: StripeDouble,
    /** The schema owner's connection, for reading outcomes (never for writing flows). */
    readonly sql: postgres.Sql,
    readonly adminToken: string,
    readonly adminId: string,
  ) {}

  static async connect(
    stack: ProdStack,
    stripe: StripeDouble,
    sql: postgres.Sql,
  ): Promise<ChaosDriver> {
    const adminId = `chaos-admin-${randomBytes(4).toString('hex')}`;
    const token = await mintToken(stack.secrets.AUTH_JWT_SECRET, { sub: adminId, role: 'admin' });
    return new ChaosDriver(stack, stripe, sql, token, adminId);
  }

  customerToken(customerId: string): Promise<string> {
    return mintToken(this.stack.secrets.AUTH_JWT_SECRET, { sub: customerId, role: 'customer' });
  }

  /** The next API process, round robin: the load is spread over all of them. */
  private apiUrl(): string {
    const apis = this.stack.apis;
    return apis[this.turn++ % apis.length]!.url;
  }

  /**
   * One HTTP call, retried (same body, same key) on a broken connection, a 5xx or a 429 until
   * it gets any other answer or the deadline passes.
   */
  async call(
    method: string,
    path: string,
    options: {
      token?: string;
      body?: unknown;
      key?: string;
      headers?: Record<string, string>;
      raw?: string;
    } = {},
  ): Promise<Answer> {
    const deadline = Date.now() + CALL_DEADLINE_MS;
    const body =
      options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
    let last: string;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        this.traffic.retries++;
        await pause(Math.min(2_000, 100 * 2 ** Math.min(attempt, 5)));
      }
      this.traffic.requests++;
      try {
        const res = await fetch(`${this.apiUrl()}${path}`, {
          method,
          headers: {
            ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...(options.key ? { 'idempotency-key': options.key } : {}),
            ...options.headers,
          },
          ...(body === undefined ? {} : { body }),
          signal: AbortSignal.timeout(60_000),
        });
        const text = await res.text();
        const parsed = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
        if (res.status < 500 && res.status !== 429) return { status: res.status, body: parsed };
        last = `${res.status} ${text.slice(0, 200)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`${method} ${path}: no answer within ${CALL_DEADLINE_MS} ms (${last})`);
      }
    }
  }

  /** Ids a customer's POST names, derived as the API derives them from the Idempotency-Key. */
  static flowId(prefix: 'pay' | 'ver' | 'ord' | 'rfd', callerId: string, key: string): string {
    return flowIdFor(prefix, callerId, key);
  }

  /** The SMS provider's signed webhook with a verification's code. */
  async deliverCode(verificationId: string): Promise<Answer> {
    const raw = JSON.stringify({ verificationId, code: '271828' });
    for (;;) {
      const answer = await this.call('POST', '/webhooks/sms', {
        raw,
        // Signed per attempt: a retry much later must not carry a stale timestamp.
        headers: { 'x-signature': signSmsBody(this.stack.secrets.SMS_WEBHOOK_SECRET, raw) },
      });
      if (answer.status !== 401) return answer;
    }
  }

  /**
   * The customer pays the payment's Checkout Session at Stripe; resolves with Stripe's
   * checkout.session.completed event for it (not yet delivered).
   */
  paidEvent(paymentId: string): string {
    if (!this.stripe.pay(paymentId)) throw new Error(`the session of ${paymentId} was not open`);
    const session = this.stripe.session(paymentId);
    return JSON.stringify(stripeEvent('checkout.session.completed', sessionObject(session)));
  }

  /** Delivers one copy of a Stripe event, signed as Stripe signs it, until it is taken (200). */
  async deliverStripe(body: string): Promise<Answer> {
    const deadline = Date.now() + CALL_DEADLINE_MS;
    for (;;) {
      const answer = await this.call('POST', '/webhooks/stripe', {
        raw: body,
        headers: {
          'stripe-signature': stripeSignature(body, this.stack.secrets.STRIPE_WEBHOOK_SECRET),
        },
      });
      this.traffic.stripeDeliveries++;
      if (answer.status === 200) {
        if (answer.body['duplicate'] === true) this.traffic.stripeDuplicateAnswers++;
        return answer;
      }
      // Stripe retries anything but a 2xx.
      if (Date.now() > deadline) {
        throw new Error(
          `a Stripe event was refused: ${answer.status} ${JSON.stringify(answer.body)}`,
        );
      }
      await pause(500);
    }
  }
}

/**
 * Watches rows in one table by id (one query per tick for all waiters), so hundreds of flows
 * waiting for a status cost the database one statement at a time.
 */
export class StatusWatcher {
  private readonly waiting = new Map<
    string,
    Array<{ want: (status: string) => boolean; resolve: (status: string) => void }>
  >();
  private timer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;

  constructor(
    private readonly sql: postgres.Sql,
    private readonly table: 'verifications' | 'payments' | 'orders' | 'refunds',
    private readonly intervalMs = 250,
  ) {}

  /** Resolves with the row's status once `want` accepts it, or rejects after `timeoutMs`. */
  until(id: string, want: (status: string) => boolean, timeoutMs = 180_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.waiting.get(id) ?? [];
        this.waiting.set(
          id,
          list.filter((w) => w.resolve !== done),
        );
        reject(new Error(`${this.table} ${id}: not in the awaited status after ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (status: string) => {
        clearTimeout(timer);
        resolve(status);
      };
      const list = this.waiting.get(id) ?? [];
      list.push({ want, resolve: done });
      this.waiting.set(id, list);
      this.schedule();
    });
  }

  private schedule() {
    if (this.timer || this.failure) return;
    this.timer = setTimeout(() => {
      this.tick()
        .catch((err: unknown) => {
          // A terminated connection is what some scenarios do on purpose: try again next tick.
          if (!/terminat|connection|ECONNRESET/i.test(String(err))) this.failure = err as Error;
        })
        .finally(() => {
          this.timer = undefined;
          if (this.waiting.size > 0) this.schedule();
        });
    }, this.intervalMs);
  }

  private async tick() {
    const ids = [...this.waiting.keys()];
    if (ids.length === 0) return;
    const rows = await this.sql<{ id: string; status: string }[]>`
      select id, status from ${this.sql(this.table)} where id = any(${ids})`;
    for (const row of rows) {
      const list = this.waiting.get(row.id);
      if (!list) continue;
      const left = list.filter((w) => {
        if (!w.want(row.status)) return true;
        w.resolve(row.status);
        return false;
      });
      if (left.length > 0) this.waiting.set(row.id, left);
      else this.waiting.delete(row.id);
    }
  }
}
