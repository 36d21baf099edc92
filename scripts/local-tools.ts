// What `npm run sms:code` and `npm run stripe:simulate` share: argument handling, the API they
// talk to, and the Stripe event they sign. Pure, so the unit tests cover it without a stack.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A refusal of the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** `--url` first, then API_URL, then the local API on PORT; without a trailing slash. */
export function apiBaseUrl(
  flag: string | undefined,
  configured: string | undefined,
  port: number,
  usage: string,
): string {
  const raw = flag ?? configured ?? `http://localhost:${port}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url: "${raw}" is not a URL (e.g. https://api.example.com)`, usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--url: "${raw}" must be an http:// or https:// URL`, usage);
  }
  return url.href.replace(/\/+$/, '');
}

interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

function parse(
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  usage: string,
): Parsed {
  try {
    return parseArgs({ args: argv, allowPositionals: true, strict: true, options });
  } catch (err) {
    throw new UsageError((err as Error).message, usage);
  }
}

export const SMS_CODE_USAGE =
  'Usage: npm run sms:code -- <verificationId> [code] [--url <api base URL>]\n' +
  '  Signs the code with SMS_WEBHOOK_SECRET and posts it to <url>/webhooks/sms.\n' +
  '  The API is --url, else API_URL, else http://localhost:$PORT.';

export interface SmsCodeArgs {
  verificationId: string;
  code: string;
  /** POST target: <api>/webhooks/sms. */
  webhookUrl: string;
}

export function parseSmsCodeArgs(
  argv: string[],
  env: { apiUrl: string | undefined; port: number },
  randomCode: () => string,
): SmsCodeArgs {
  const { values, positionals } = parse(argv, { url: { type: 'string' } }, SMS_CODE_USAGE);
  const [verificationId, code, ...extra] = positionals;
  if (!verificationId) throw new UsageError('a verification id is required', SMS_CODE_USAGE);
  if (extra.length > 0) {
    throw new UsageError(`unexpected argument "${extra[0]}"`, SMS_CODE_USAGE);
  }
  if (code !== undefined && !/^\d{4,10}$/.test(code)) {
    throw new UsageError(`code: "${code}" must be 4 to 10 digits`, SMS_CODE_USAGE);
  }
  const url = typeof values.url === 'string' ? values.url : undefined;
  return {
    verificationId,
    code: code ?? randomCode(),
    webhookUrl: `${apiBaseUrl(url, env.apiUrl, env.port, SMS_CODE_USAGE)}/webhooks/sms`,
  };
}

export const STRIPE_EVENTS = {
  completed: { type: 'checkout.session.completed', paymentStatus: 'paid', status: 'complete' },
  'async-succeeded': {
    type: 'checkout.session.async_payment_succeeded',
    paymentStatus: 'paid',
    status: 'complete',
  },
  'async-failed': {
    type: 'checkout.session.async_payment_failed',
    paymentStatus: 'unpaid',
    status: 'complete',
  },
  expired: { type: 'checkout.session.expired', paymentStatus: 'unpaid', status: 'expired' },
} as const;
export type StripeEventKind = keyof typeof STRIPE_EVENTS;

export const STRIPE_SIMULATE_USAGE =
  'Usage: npm run stripe:simulate -- <paymentId> [--event ' +
  `${Object.keys(STRIPE_EVENTS).join('|')}] [--url <api base URL>]\n` +
  '  Where the payment comes from, first that applies:\n' +
  '    --session <cs_…> --amount <minor units> --currency <eur>   no lookup at all\n' +
  '    --token <admin or owner bearer token>                       GET <url>/v1/checkouts/<id>\n' +
  '    DATABASE_URL                                                 the payments table\n' +
  '    AUTH_JWT_SECRET (npm start sets it)                          an admin token for the API\n' +
  '  Optional: --payment-intent <pi_…>. Signs with STRIPE_WEBHOOK_SECRET; posts to <url>/webhooks/stripe.';

/** What the event needs to know about the payment. */
export interface CheckoutFacts {
  sessionId: string;
  amount: number;
  currency: string;
  paymentIntentId?: string | undefined;
  /** Metadata the API set on the session; each is checked by the webhook only when present. */
  metadata?: Record<string, string>;
}

export type PaymentSource =
  { kind: 'flags'; facts: CheckoutFacts } | { kind: 'api'; token: string } | { kind: 'lookup' };

export interface StripeSimulateArgs {
  paymentId: string;
  event: StripeEventKind;
  apiUrl: string;
  webhookUrl: string;
  paymentIntent: string | undefined;
  source: PaymentSource;
}

export function parseStripeSimulateArgs(
  argv: string[],
  env: { apiUrl: string | undefined; port: number },
): StripeSimulateArgs {
  const usage = STRIPE_SIMULATE_USAGE;
  const { values, positionals } = parse(
    argv,
    {
      event: { type: 'string', default: 'completed' },
      url: { type: 'string' },
      token: { type: 'string' },
      session: { type: 'string' },
      amount: { type: 'string' },
      currency: { type: 'string' },
      'payment-intent': { type: 'string' },
    },
    usage,
  );
  const str = (name: string) => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const [paymentId, ...extra] = positionals;
  if (!paymentId) throw new UsageError('a payment id (pay_…) is required', usage);
  if (!/^pay_[A-Za-z0-9]{1,64}$/.test(paymentId)) {
    throw new UsageError(`"${paymentId}" is not a payment id (pay_…)`, usage);
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`, usage);
  const event = str('event') ?? 'completed';
  if (!Object.hasOwn(STRIPE_EVENTS, event)) {
    throw new UsageError(
      `--event: "${event}" is not one of ${Object.keys(STRIPE_EVENTS).join(', ')}`,
      usage,
    );
  }
  // A full webhook URL (the old meaning of --url) still works.
  const rawUrl = str('url')?.replace(/\/webhooks\/stripe\/?$/, '');
  const apiUrl = apiBaseUrl(rawUrl, env.apiUrl, env.port, usage);

  const given = (['session', 'amount', 'currency'] as const).filter((k) => str(k) !== undefined);
  let source: PaymentSource;
  if (given.length > 0) {
    const missing = (['session', 'amount', 'currency'] as const).filter((k) => !given.includes(k));
    if (missing.length > 0) {
      throw new UsageError(
        `--session, --amount and --currency go together; missing ${missing.map((m) => `--${m}`).join(', ')}`,
        usage,
      );
    }
    const amount = Number(str('amount'));
    if (!Number.isSafeInteger(amount) || amount < 0) {
      throw new UsageError(
        `--amount: "${str('amount')}" must be whole minor units (500 = 5.00)`,
        usage,
      );
    }
    const currency = str('currency')!.toLowerCase();
    if (!/^[a-z]{3}$/.test(currency)) {
      throw new UsageError(`--currency: "${str('currency')}" must be a three-letter code`, usage);
    }
    const sessionId = str('session')!;
    if (!/^cs_\S+$/.test(sessionId)) {
      throw new UsageError(`--session: "${sessionId}" is not a Checkout Session id (cs_…)`, usage);
    }
    source = { kind: 'flags', facts: { sessionId, amount, currency } };
  } else if (str('token') !== undefined) {
    source = { kind: 'api', token: str('token')! };
  } else {
    source = { kind: 'lookup' };
  }
  return {
    paymentId,
    event: event as StripeEventKind,
    apiUrl,
    webhookUrl: `${apiUrl}/webhooks/stripe`,
    paymentIntent: str('payment-intent'),
    source,
  };
}

/** The Checkout Session event Stripe would send for this payment. */
export function checkoutSessionEvent(
  paymentId: string,
  kind: StripeEventKind,
  facts: CheckoutFacts,
  ids: { eventId: string; paymentIntentId: string; created: number },
) {
  const { type, paymentStatus, status } = STRIPE_EVENTS[kind];
  return {
    id: ids.eventId,
    object: 'event',
    api_version: '2025-10-29.clover',
    created: ids.created,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: {
      object: {
        id: facts.sessionId,
        object: 'checkout.session',
        mode: 'payment',
        client_reference_id: paymentId,
        metadata: { paymentId, ...facts.metadata },
        amount_total: facts.amount,
        currency: facts.currency,
        payment_intent: ids.paymentIntentId,
        payment_status: paymentStatus,
        status,
      },
    },
  };
}
