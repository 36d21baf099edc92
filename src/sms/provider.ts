// SMS providers that rent phone numbers for verifications: a simulated one for local runs and
// tests, and an HTTP one for real deployments. Both are idempotent by the caller's key.
import { createHash } from 'node:crypto';
import { required, type Config } from '../config.js';

export interface RentRequest {
  verificationId: string;
  service: string;
  country: string;
  /** Derived from the workflow id; a retried rent returns the same number. */
  idempotencyKey: string;
}

export interface RentedNumber {
  providerRef: string;
  phoneNumber: string;
}

/** The provider refused for good (no numbers for this service/country, account blocked…). */
export class ProviderRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProviderRefusal';
  }
}

export interface SmsProvider {
  rentNumber(request: RentRequest): Promise<RentedNumber>;
  /** Releases a rented number; releasing one already released counts as success. */
  releaseNumber(request: { providerRef: string; idempotencyKey: string }): Promise<void>;
  /**
   * Releases whatever number was rented for this verification, if any: for a rent whose answer
   * was lost, so we never learnt the number's reference.
   */
  releaseByReference(request: { verificationId: string; idempotencyKey: string }): Promise<void>;
}

export interface SimulatedOptions {
  /** Services the simulated provider has no numbers for (a permanent refusal). */
  unavailableServices?: Iterable<string>;
  /** Probability (0..1) that a call fails transiently, to exercise retries. */
  transientFailureRate?: number;
  /** Delay before each answer. */
  delayMs?: number;
  /** Services for which a rent succeeds at the provider but its answer never arrives. */
  lostAnswerServices?: Iterable<string>;
  random?: () => number;
}

/** In-memory provider: numbers derived from the verification id, so retries agree. */
export class SimulatedSmsProvider implements SmsProvider {
  readonly rentals = new Map<string, RentedNumber & RentRequest>();
  readonly released = new Set<string>();
  private readonly unavailable: Set<string>;
  private readonly lostAnswers: Set<string>;

  constructor(private readonly options: SimulatedOptions = {}) {
    this.unavailable = new Set(options.unavailableServices ?? []);
    this.lostAnswers = new Set(options.lostAnswerServices ?? []);
  }

  private async answer(): Promise<void> {
    if (this.options.delayMs) await new Promise((r) => setTimeout(r, this.options.delayMs));
    const random = this.options.random ?? Math.random;
    if (this.options.transientFailureRate && random() < this.options.transientFailureRate) {
      throw new Error('simulated SMS provider: temporarily unavailable');
    }
  }

  async rentNumber(request: RentRequest): Promise<RentedNumber> {
    await this.answer();
    if (this.unavailable.has(request.service)) {
      throw new ProviderRefusal(
        `no numbers available for ${request.service} in ${request.country}`,
      );
    }
    const existing = this.rentals.get(request.idempotencyKey);
    if (existing && !this.lostAnswers.has(request.service)) {
      return { providerRef: existing.providerRef, phoneNumber: existing.phoneNumber };
    }
    const digits = createHash('sha256').update(request.verificationId).digest().readUInt32BE(0);
    const rented = {
      providerRef: `sim_${request.verificationId}`,
      phoneNumber: `+1555${String(digits % 10_000_000).padStart(7, '0')}`,
    };
    this.rentals.set(request.idempotencyKey, { ...request, ...rented });
    if (this.lostAnswers.has(request.service)) {
      throw new Error('simulated SMS provider: the answer was lost on the way');
    }
    return rented;
  }

  async releaseNumber(request: { providerRef: string }): Promise<void> {
    await this.answer();
    this.released.add(request.providerRef);
  }

  async releaseByReference(request: { verificationId: string }): Promise<void> {
    await this.answer();
    for (const rental of this.rentals.values()) {
      if (rental.verificationId === request.verificationId) this.released.add(rental.providerRef);
    }
  }
}

/**
 * A provider behind a small REST contract: POST {base}/numbers {service, country, reference}
 * → {id, phoneNumber}, or 422 when it has no number; DELETE {base}/numbers/{id}, or
 * DELETE {base}/numbers?reference={verificationId}. Keys travel in Idempotency-Key.
 */
export class HttpSmsProvider implements SmsProvider {
  constructor(
    private readonly baseUrl: string,
    private readonly apiKey: string,
    private readonly timeoutMs = 10_000,
  ) {}

  private async call(method: string, path: string, key: string, body?: unknown): Promise<Response> {
    return fetch(new URL(path, this.baseUrl), {
      method,
      headers: {
        authorization: `Bearer ${this.apiKey}`,
        'idempotency-key': key,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
  }

  async rentNumber(request: RentRequest): Promise<RentedNumber> {
    const res = await this.call('POST', 'numbers', request.idempotencyKey, {
      service: request.service,
      country: request.country,
      reference: request.verificationId,
    });
    // Only "no number for this service and country" (422) is final. Auth, routing and other
    // client errors are our configuration, not the customer's purchase: they retry (and alert)
    // instead of quietly refunding every purchase.
    if (res.status === 422) {
      throw new ProviderRefusal(`SMS provider has no number (${res.status}): ${await res.text()}`);
    }
    if (!res.ok) throw new Error(`SMS provider answered ${res.status}`);
    const body = (await res.json()) as { id?: string; phoneNumber?: string };
    if (!body.id || !body.phoneNumber)
      throw new Error('SMS provider answer lacks id or phoneNumber');
    return { providerRef: body.id, phoneNumber: body.phoneNumber };
  }

  async releaseNumber(request: { providerRef: string; idempotencyKey: string }): Promise<void> {
    const res = await this.call(
      'DELETE',
      `numbers/${encodeURIComponent(request.providerRef)}`,
      request.idempotencyKey,
    );
    HttpSmsProvider.released(res);
  }

  async releaseByReference(request: {
    verificationId: string;
    idempotencyKey: string;
  }): Promise<void> {
    const res = await this.call(
      'DELETE',
      `numbers?reference=${encodeURIComponent(request.verificationId)}`,
      request.idempotencyKey,
    );
    HttpSmsProvider.released(res);
  }

  /** Released, or already released or expired at the provider: the goal is reached either way. */
  private static released(res: Response): void {
    if (res.ok || res.status === 404 || res.status === 410) return;
    throw new Error(`SMS provider answered ${res.status} to a release`);
  }
}

/** The provider the configuration names. */
export function smsProviderFromConfig(config: Config): SmsProvider {
  if (config.sms.provider === 'http') {
    return new HttpSmsProvider(
      required(config.sms.providerUrl, 'SMS_PROVIDER_URL', 'when SMS_PROVIDER=http'),
      required(config.sms.providerApiKey, 'SMS_PROVIDER_API_KEY', 'when SMS_PROVIDER=http'),
    );
  }
  return new SimulatedSmsProvider({
    unavailableServices: config.sms.simulated.unavailableServices,
    transientFailureRate: config.sms.simulated.failureRate,
    delayMs: config.sms.simulated.delayMs,
  });
}
