// Stopping the API: new connections are refused at once, a request in flight still gets its
// answer, an open wallet event stream is ended rather than waited on, and then stop() returns.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import type { Database } from '../src/db/client.js';
import { startApi } from '../src/server.js';
import { freePort } from '../src/stack/ports.js';
import {
  JWT_SECRET,
  adminToken,
  createCustomer,
  customerToken,
  eventually,
  jsonRequest,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;

beforeAll(() => {
  db = testDatabase();
});

afterAll(async () => {
  await db?.close();
});

describe('stopping the API', () => {
  it('finishes the request in flight and ends event streams, refusing new connections', async () => {
    const api = await startApi(
      loadConfig({
        DATABASE_URL: inject('databaseUrl'),
        TEMPORAL_ADDRESS: inject('temporalAddress'),
        TEMPORAL_NAMESPACE: inject('temporalNamespace'),
        TEMPORAL_TASK_QUEUE: uniqueId('api-shutdown'),
        AUTH_JWT_SECRET: JWT_SECRET,
        LOG_LEVEL: 'silent',
        PORT: String(await freePort()),
      }),
    );
    let stopped = false;
    try {
      // An open wallet event stream, its first event read.
      const customer = await createCustomer(db);
      const stream = await fetch(`${api.url}/v1/wallet/events`, {
        headers: { authorization: `Bearer ${await customerToken(customer.id)}` },
      });
      expect(stream.status).toBe(200);
      const reader = stream.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain('event: balance');

      // A request held in flight: its insert waits on an uncommitted row with the same e-mail.
      const email = `shutdown-${randomUUID()}@example.test`;
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const holder = db.sql
        .begin(async (tx) => {
          await tx`insert into customers (email) values (${email})`;
          await held;
          throw new Error('roll back');
        })
        .catch(() => undefined);
      const inFlight = fetch(
        `${api.url}/v1/customers`,
        jsonRequest('POST', { email }, await adminToken()),
      );
      await eventually(async () => {
        const [row] = await db.sql<{ waiting: number }[]>`
          select count(*)::int as waiting from pg_stat_activity
          where datname = current_database() and application_name = 'creditflow-api'
            and wait_event_type = 'Lock'`;
        return row!.waiting > 0 ? true : undefined;
      });

      const stopping = api.stop().then(() => (stopped = true));
      // No new connection is accepted once stop() has begun …
      await expect(fetch(`${api.url}/healthz`)).rejects.toThrow();
      // … the event stream is ended, not waited on …
      let ended = false;
      while (!ended) ended = (await reader.read()).done;
      // … and stop() waits for the request in flight, which gets its answer.
      expect(stopped).toBe(false);
      release();
      await holder;
      const answered = await inFlight;
      expect(answered.status).toBe(201);
      await stopping;
      expect(stopped).toBe(true);
    } finally {
      if (!stopped) await api.stop();
    }
  });
});
