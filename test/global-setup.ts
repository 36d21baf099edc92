// Once per test run: PostgreSQL (a fresh database), the Temporal dev server, and one workflow bundle.
import { Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { loadConfig, processEnv } from '../src/config.js';
import { runMigrations } from '../src/db/client.js';
import {
  LOCAL_POSTGRES_URL,
  assertReachable,
  dropLogin,
  ensureAppLogin,
  isReachable,
  startEmbeddedPostgres,
} from '../src/stack/postgres.js';
import { startStripeMock } from '../src/stack/stripe-mock.js';
import { startTemporalDevServer } from '../src/stack/temporal.js';
import { workflowInterceptorModules } from '../src/observability/temporal-interceptors.js';
import { webpackConfigHook, workflowsPath } from '../src/temporal.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's database as the app's login role (a member of creditflow_app). */
    databaseUrl: string;
    /** The same database as its owner: migrations, and tests that corrupt it on purpose. */
    ownerDatabaseUrl: string;
    temporalAddress: string;
    temporalNamespace: string;
    workflowBundlePath: string;
    stripeApiBase: string;
  }
}

const say = (message: string) => process.stderr.write(`[test setup] ${message}\n`);

/** A fresh database on the server DATABASE_URL names, dropped after the run. */
async function freshDatabaseOn(url: string): Promise<{ url: string; drop: () => Promise<void> }> {
  await assertReachable(url);
  const name = `creditflow_test_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const admin = postgres(url, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const target = new URL(url);
  target.pathname = `/${name}`;
  return {
    url: target.toString(),
    drop: async () => {
      const sql = postgres(url, { max: 1, onnotice: () => undefined });
      await sql.unsafe(`drop database if exists ${name} with (force)`);
      await sql.end();
    },
  };
}

/** A configured Temporal that does not answer fails the run here, with what to do about it. */
async function assertTemporalReachable(address: string): Promise<void> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: '5 seconds' });
    await connection.close();
  } catch (err) {
    throw new Error(
      `Temporal at ${address} (TEMPORAL_ADDRESS) is not reachable: ${(err as Error).message}. ` +
        'Start it, fix TEMPORAL_ADDRESS, or unset it so the tests start their own dev server.',
      { cause: err },
    );
  }
}

export default async function setup(project: TestProject) {
  const env = processEnv();
  const config = loadConfig(env);
  const cleanups: Array<() => Promise<void>> = [];
  const scratch = mkdtempSync(join(tmpdir(), 'creditflow-test-'));
  // The embedded PostgreSQL runs as an unprivileged user, which must be able to reach its folder.
  chmodSync(scratch, 0o755);
  cleanups.push(() => Promise.resolve(rmSync(scratch, { recursive: true, force: true })));

  try {
    // A fresh database on DATABASE_URL's server, else on a local server if one answers,
    // else an embedded PostgreSQL for this run only.
    let ownerDatabaseUrl: string;
    const appRole = `creditflow_test_app_${randomBytes(4).toString('hex')}`;
    const server =
      config.databaseUrl ??
      ((await isReachable(LOCAL_POSTGRES_URL)) ? LOCAL_POSTGRES_URL : undefined);
    if (server) {
      const fresh = await freshDatabaseOn(server);
      cleanups.push(async () => {
        await fresh.drop();
        await dropLogin(server, appRole);
      });
      ownerDatabaseUrl = fresh.url;
      say(
        `PostgreSQL: fresh database ${new URL(fresh.url).pathname.slice(1)} on ${new URL(server).host}.`,
      );
    } else {
      const pg = await startEmbeddedPostgres(join(scratch, 'postgres'), {
        ephemeral: true,
        log: say,
      });
      cleanups.push(pg.stop);
      ownerDatabaseUrl = pg.url;
      say('PostgreSQL: embedded, for this run only.');
    }
    // Migrations as the owner; the app and workers as a login role with only the app's rights.
    await runMigrations(ownerDatabaseUrl);
    const databaseUrl = await ensureAppLogin(ownerDatabaseUrl, {
      role: appRole,
      password: randomBytes(18).toString('hex'),
    }).catch((err: unknown) => {
      throw new Error(
        `Could not create the tests' app login role (${(err as Error).message}): ` +
          "the DATABASE_URL server's user needs CREATEROLE (and CREATEDB) for the tests.",
        { cause: err },
      );
    });

    let temporalAddress = config.temporal.address;
    if (temporalAddress) {
      say(`Temporal: ${temporalAddress} (TEMPORAL_ADDRESS).`);
      await assertTemporalReachable(temporalAddress);
    } else {
      // In memory: faster than a file-backed server, and nothing to clean up.
      const temporal = await startTemporalDevServer({ env, log: say });
      cleanups.push(temporal.stop);
      temporalAddress = temporal.address;
      say(`Temporal: dev server at ${temporalAddress}.`);
    }

    // One stripe-mock for the run: stateless, so every file can share it.
    const stripeMock = await startStripeMock(env, say, 0);
    if (!stripeMock) {
      throw new Error(
        'stripe-mock is needed by the tests: install Go (it is then built once), or set STRIPE_MOCK_PATH.',
      );
    }
    cleanups.push(stripeMock.stop);
    say(`stripe-mock: ${stripeMock.apiBase}.`);

    const bundle = await bundleWorkflowCode({
      workflowsPath,
      webpackConfigHook,
      workflowInterceptorModules: workflowInterceptorModules({ tracing: false }),
      logger: {
        log: () => undefined,
        trace: () => undefined,
        debug: () => undefined,
        info: () => undefined,
        warn: say,
        error: say,
      },
    });
    const workflowBundlePath = join(scratch, 'workflow-bundle.js');
    writeFileSync(workflowBundlePath, bundle.code);

    project.provide('databaseUrl', databaseUrl);
    project.provide('ownerDatabaseUrl', ownerDatabaseUrl);
    project.provide('temporalAddress', temporalAddress);
    project.provide('temporalNamespace', config.temporal.namespace);
    project.provide('workflowBundlePath', workflowBundlePath);
    project.provide('stripeApiBase', stripeMock.apiBase);
  } catch (err) {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    throw err;
  }

  return async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => say(`cleanup failed: ${(err as Error).message}`));
    }
  };
}
