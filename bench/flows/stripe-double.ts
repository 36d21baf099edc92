// A stateful Stripe double in front of stripe-mock, for the webhook benchmark only. stripe-mock
// is stateless: every Checkout Session it creates has the same id (and payment intent), and
// payments keep both unique. The double forwards every request to stripe-mock and gives each created
// session an id of its own (the same one again for a retried request with the same
// Idempotency-Key, as Stripe does).
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StripeDouble {
  apiBase: string;
  close: () => Promise<void>;
}

const readBody = async (req: IncomingMessage): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
};

export async function startStripeDouble(stripeMockBase: string): Promise<StripeDouble> {
  const sessionIds = new Map<string, { id: string; paymentIntent: string }>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
      }
      const upstream = await fetch(new URL(req.url ?? '/', stripeMockBase), {
        method: req.method ?? 'GET',
        headers,
        ...(body.length > 0 ? { body } : {}),
      });
      let text = await upstream.text();
      if (req.method === 'POST' && req.url === '/v1/checkout/sessions' && upstream.ok) {
        const key = headers['idempotency-key'] ?? randomBytes(8).toString('hex');
        let ids = sessionIds.get(key);
        if (!ids) {
          const suffix = randomBytes(12).toString('hex');
          ids = { id: `cs_test_flowbench_${suffix}`, paymentIntent: `pi_flowbench_${suffix}` };
          sessionIds.set(key, ids);
        }
        const session = JSON.parse(text) as Record<string, unknown>;
        session.id = ids.id;
        // Payment intents are unique per payment too.
        if (typeof session.payment_intent === 'string') session.payment_intent = ids.paymentIntent;
        text = JSON.stringify(session);
      }
      res.writeHead(upstream.status, {
        'content-type': upstream.headers.get('content-type') ?? 'application/json',
      });
      res.end(text);
    })().catch((err: unknown) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { type: 'api_error', message: String(err) } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    apiBase: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
