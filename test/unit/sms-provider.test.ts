// The SMS providers: what is final, what retries, and that keys travel with every call.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpSmsProvider, ProviderRefusal, SimulatedSmsProvider } from '../../src/sms/provider.js';

interface Seen {
  method: string;
  url: string;
  key: string | undefined;
  auth: string | undefined;
  body: string;
}

let server: Server;
let base: string;
const seen: Seen[] = [];
/** Status the fake provider answers next, by method. */
const next: Record<string, number> = {};

const read = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => resolve(body));
  });

beforeAll(async () => {
  server = createServer((req, res) => {
    void read(req).then((body) => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        key: req.headers['idempotency-key'] as string | undefined,
        auth: req.headers.authorization,
        body,
      });
      const status = next[req.method ?? ''] ?? 200;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        status === 200
          ? JSON.stringify({ id: 'num_1', phoneNumber: '+15550001111' })
          : '{"error":"x"}',
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/api/`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const request = {
  verificationId: 'ver_1',
  service: 'whatsapp',
  country: 'US',
  idempotencyKey: 'wf:rent',
};

describe('HttpSmsProvider', () => {
  it('rents with the key and the API key, and parses the number', async () => {
    next.POST = 200;
    const provider = new HttpSmsProvider(base, 'secret-key');
    expect(await provider.rentNumber(request)).toEqual({
      providerRef: 'num_1',
      phoneNumber: '+15550001111',
    });
    const call = seen.at(-1)!;
    expect(call).toMatchObject({
      method: 'POST',
      url: '/api/numbers',
      key: 'wf:rent',
      auth: 'Bearer secret-key',
    });
    expect(JSON.parse(call.body)).toEqual({
      service: 'whatsapp',
      country: 'US',
      reference: 'ver_1',
    });
  });

  it('treats 422 (no number) as final and other errors as retryable', async () => {
    const provider = new HttpSmsProvider(base, 'k');
    next.POST = 422;
    await expect(provider.rentNumber(request)).rejects.toBeInstanceOf(ProviderRefusal);
    for (const status of [401, 404, 429, 500, 503]) {
      next.POST = status;
      const err = await provider.rentNumber(request).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(ProviderRefusal);
    }
  });

  it('counts releasing a number already gone as success', async () => {
    const provider = new HttpSmsProvider(base, 'k');
    for (const status of [200, 404, 410]) {
      next.DELETE = status;
      await expect(
        provider.releaseNumber({ providerRef: 'num 1', idempotencyKey: 'wf:release' }),
      ).resolves.toBeUndefined();
    }
    expect(seen.at(-1)).toMatchObject({
      method: 'DELETE',
      url: '/api/numbers/num%201',
      key: 'wf:release',
    });
    next.DELETE = 500;
    await expect(
      provider.releaseNumber({ providerRef: 'num_1', idempotencyKey: 'k' }),
    ).rejects.toThrow(/500/);
  });
});

describe('SimulatedSmsProvider', () => {
  it('gives the same number for the same key and refuses unavailable services', async () => {
    const provider = new SimulatedSmsProvider({ unavailableServices: ['telegram'] });
    const first = await provider.rentNumber(request);
    expect(await provider.rentNumber(request)).toEqual(first);
    expect(first.phoneNumber).toMatch(/^\+1555\d{7}$/);
    await expect(provider.rentNumber({ ...request, service: 'telegram' })).rejects.toBeInstanceOf(
      ProviderRefusal,
    );
  });

  it('fails transiently at the configured rate', async () => {
    const provider = new SimulatedSmsProvider({ transientFailureRate: 0.5, random: () => 0.1 });
    await expect(provider.rentNumber(request)).rejects.toThrow(/temporarily unavailable/);
  });
});
