// The worker process refuses to start on an incomplete setup, with one line naming the missing
// piece and the command that adds it (no stack trace), and a taken metrics port is a config error.
import type { Client } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../src/stack/ports.js';
import {
  connectTestClient,
  eventually,
  runWorkerProcess,
  scratchDatabase,
  uniqueId,
} from './helpers.js';

let temporal: Client;

beforeAll(async () => {
  temporal = await connectTestClient();
});

afterAll(async () => {
  await temporal.connection.close();
});

/** Runs the worker to its exit; a worker that starts after all is stopped and fails the test. */
async function refusal(env: Record<string, string>) {
  const worker = runWorkerProcess({ WORKER_METRICS_PORT: String(await freePort()), ...env });
  const result = await Promise.race([
    worker.exited,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 45_000)),
  ]);
  if (!result) {
    await worker.stop();
    throw new Error('the worker started instead of refusing');
  }
  expect(result.code).not.toBe(0);
  const lines = result.stderr.trim().split('\n');
  // One line, no stack trace.
  expect(lines).toHaveLength(1);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  return lines[0]!;
}

describe('worker start', () => {
  const address = () => inject('temporalAddress');

  it('refuses a namespace that does not exist, naming the command that creates it', async () => {
    const namespace = uniqueId('missing-ns');
    const line = await refusal({ TEMPORAL_NAMESPACE: namespace });
    expect(line).toContain(`namespace "${namespace}" does not exist`);
    expect(line).toContain(
      `temporal operator namespace create -n ${namespace} --address ${address()}`,
    );
  });

  it('refuses a namespace without the search attributes, naming each command', async () => {
    const namespace = uniqueId('bare-ns');
    await temporal.workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs('1 day'),
    });
    await eventually(() =>
      temporal.workflowService.describeNamespace({ namespace }).then(() => true),
    );
    const line = await refusal({ TEMPORAL_NAMESPACE: namespace });
    for (const name of ['CustomerId', 'FlowStatus']) {
      expect(line).toContain(
        `temporal operator search-attribute create --name ${name} --type Keyword --namespace ${namespace} --address ${address()}`,
      );
    }
  });

  it('refuses a database without migrations, naming npm run db:migrate', async () => {
    const scratch = await scratchDatabase('worker_unmigrated', { migrate: false });
    try {
      const line = await refusal({ DATABASE_URL: scratch.url });
      expect(line).toContain('migrations');
      expect(line).toContain('npm run db:migrate');
    } finally {
      await scratch.drop();
    }
  });

  it('refuses a metrics port another process holds, as a configuration error', async () => {
    const port = await freePort();
    const holder: Server = await new Promise((resolve) => {
      const server = createServer();
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
    try {
      const worker = runWorkerProcess({ WORKER_METRICS_PORT: String(port) });
      const result = await worker.exited;
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(
        `WORKER_METRICS_PORT: ${port} is already in use on 127.0.0.1; set WORKER_METRICS_PORT to a free port`,
      );
      expect(result.stderr).not.toMatch(/^\s+at /m);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });
});
