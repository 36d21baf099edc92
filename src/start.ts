// `npm start`: the whole service on one machine — PostgreSQL, Temporal (with UI), stripe-mock,
// mailpit, migrations, the worker and the API — using what is configured and embedded defaults elsewhere.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dataDir, loadConfig, processEnv, type Config } from './config.js';
import { runMigrations } from './db/client.js';
import { createMetrics } from './metrics.js';
import { startApi } from './server.js';
import { freePort } from './stack/ports.js';
import {
  LOCAL_POSTGRES_URL,
  assertReachable,
  ensureAppLogin,
  ensureDatabase,
  isReachable,
  startEmbeddedPostgres,
} from './stack/postgres.js';
import { startMailpit } from './stack/mailpit.js';
import { startStripeMock } from './stack/stripe-mock.js';
import { startTemporalDevServer } from './stack/temporal.js';
import { startWorker } from './worker.js';

const say = (message: string) => process.stdout.write(`[creditflow] ${message}\n`);

interface LocalSecrets {
  AUTH_JWT_SECRET: string;
  STRIPE_WEBHOOK_SECRET: string;
  SMS_WEBHOOK_SECRET: string;
  /** Password of the local login role the API and worker connect as. */
  DATABASE_APP_PASSWORD: string;
}

/** The login role `npm start` creates for the API and worker (a member of creditflow_app). */
const LOCAL_APP_LOGIN = 'creditflow_app_login';

/** Dev-only secrets, made once and kept in the data folder so tokens survive restarts. */
function localSecrets(dir: string): LocalSecrets {
  const file = join(dir, 'secrets.json');
  const kept = existsSync(file)
    ? (JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalSecrets>)
    : {};
  const secrets: LocalSecrets = {
    AUTH_JWT_SECRET: kept.AUTH_JWT_SECRET ?? randomBytes(32).toString('hex'),
    STRIPE_WEBHOOK_SECRET: kept.STRIPE_WEBHOOK_SECRET ?? `whsec_${randomBytes(24).toString('hex')}`,
    SMS_WEBHOOK_SECRET: kept.SMS_WEBHOOK_SECRET ?? randomBytes(24).toString('hex'),
    DATABASE_APP_PASSWORD: kept.DATABASE_APP_PASSWORD ?? randomBytes(18).toString('hex'),
  };
  if (Object.keys(kept).length !== Object.keys(secrets).length) {
    writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  }
  return secrets;
}

async function main(): Promise<void> {
  const env = processEnv();
  const base = loadConfig(env);
  const dir = dataDir(base);
  mkdirSync(dir, { recursive: true });
  const stops: Array<{ name: string; stop: () => Promise<void> }> = [];
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('Stopping…');
    for (const { name, stop } of stops.reverse()) {
      try {
        await stop();
      } catch (err) {
        say(`  ${name} did not stop cleanly: ${(err as Error).message}`);
      }
    }
    say('Stopped.');
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  try {
    const { DATABASE_APP_PASSWORD: appPassword, ...secrets } = localSecrets(dir);
    const effective: Record<string, string | undefined> = { ...secrets, ...env };

    // PostgreSQL: migrations run as the owner; the API and worker connect as a member of
    // creditflow_app, which cannot change the ledger's rules (README, "Database roles").
    let ownerUrl: string;
    if (base.databaseUrl) {
      say('Using PostgreSQL from DATABASE_URL.');
      await assertReachable(base.databaseUrl);
      ownerUrl = base.migrationDatabaseUrl!;
    } else if (base.migrationDatabaseUrl) {
      say('Using PostgreSQL from MIGRATION_DATABASE_URL.');
      await assertReachable(base.migrationDatabaseUrl);
      ownerUrl = base.migrationDatabaseUrl;
    } else {
      say(`Starting embedded PostgreSQL (data in ${join(dir, 'postgres')})…`);
      try {
        const pg = await startEmbeddedPostgres(join(dir, 'postgres'), { log: say });
        stops.push({ name: 'PostgreSQL', stop: pg.stop });
        ownerUrl = pg.url;
      } catch (err) {
        // Where the embedded server cannot run (see the message) but a local one answers,
        // use that rather than give up; the message says so, so nobody is surprised.
        if (!(await isReachable(LOCAL_POSTGRES_URL))) throw err;
        say((err as Error).message);
        ownerUrl = await ensureDatabase(LOCAL_POSTGRES_URL, 'creditflow');
        say('Using the local PostgreSQL at 127.0.0.1:5432 instead (database creditflow).');
      }
    }
    say('Applying database migrations…');
    await runMigrations(ownerUrl);
    effective.MIGRATION_DATABASE_URL = ownerUrl;
    if (base.databaseUrl) {
      if (ownerUrl === base.databaseUrl) {
        say(
          'The API and worker connect with the same rights as migrations; set MIGRATION_DATABASE_URL ' +
            'and a DATABASE_URL for a member of creditflow_app to keep them from changing the ledger rules.',
        );
      }
    } else {
      effective.DATABASE_URL = await ensureAppLogin(ownerUrl, {
        role: LOCAL_APP_LOGIN,
        password: appPassword,
      });
      say(`The API and worker connect as ${LOCAL_APP_LOGIN} (a member of creditflow_app).`);
    }

    // Temporal
    let temporalUi = base.temporal.uiUrl;
    if (base.temporal.address) {
      say(`Using Temporal at ${base.temporal.address} (namespace ${base.temporal.namespace}).`);
    } else {
      say('Starting the Temporal dev server…');
      const temporal = await startTemporalDevServer({
        dbFilename: join(dir, 'temporal.db'),
        port: await freePort(7233),
        uiPort: await freePort(8233),
        namespace: base.temporal.namespace,
        env,
        log: say,
      });
      stops.push({ name: 'Temporal', stop: temporal.stop });
      effective.TEMPORAL_ADDRESS = temporal.address;
      temporalUi = temporal.uiUrl;
      effective.TEMPORAL_UI_URL = temporalUi;
    }

    // stripe-mock, unless a real Stripe is configured
    if (!base.stripe.apiBase && !base.stripe.secretKey) {
      const mock = await startStripeMock(env, say);
      if (mock) {
        stops.push({ name: 'stripe-mock', stop: mock.stop });
        effective.STRIPE_API_BASE = mock.apiBase;
        effective.STRIPE_SECRET_KEY = 'sk_test_creditflowlocal';
        say(`stripe-mock at ${mock.apiBase}.`);
      } else {
        say(
          'stripe-mock is not available (Go not installed); Stripe calls will fail until STRIPE_* is set.',
        );
      }
    }

    // mailpit catches the notification e-mails, unless a real SMTP server is configured.
    let mailUi: string | undefined;
    if (base.mail.smtpUrl) {
      say('E-mail notifications go to the SMTP server in SMTP_URL.');
    } else {
      const mailpit = await startMailpit(env, say, {
        database: join(dir, 'mailpit.db'),
        smtpPort: await freePort(1025),
        webPort: await freePort(8025),
      });
      if (mailpit) {
        stops.push({ name: 'mailpit', stop: mailpit.stop });
        effective.SMTP_URL = mailpit.smtpUrl;
        mailUi = mailpit.webUrl;
      } else {
        say('mailpit is not available (Go not installed); notifications are not e-mailed.');
      }
    }

    const config: Config = loadConfig(effective);
    writeFileSync(
      join(dir, 'stack.env'),
      [
        'DATABASE_URL',
        'MIGRATION_DATABASE_URL',
        'TEMPORAL_ADDRESS',
        'TEMPORAL_NAMESPACE',
        'AUTH_JWT_SECRET',
        'SMS_WEBHOOK_SECRET',
        'STRIPE_WEBHOOK_SECRET',
        'PORT',
      ]
        .map((k) => [k, effective[k] ?? (k === 'PORT' ? String(config.port) : undefined)])
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n') + '\n',
      { mode: 0o600 },
    );

    const metrics = createMetrics({ defaultMetrics: true });
    const worker = await startWorker(config, { metrics });
    stops.push({ name: 'worker', stop: worker.stop });
    worker.done.catch((err: unknown) => {
      say(`The worker stopped with an error: ${(err as Error).message}`);
      void shutdown(1);
    });
    const api = await startApi(config, { metrics });
    stops.push({ name: 'API', stop: api.stop });

    say('');
    say(`API          ${api.url}`);
    say(`API docs     ${api.url}/docs  (OpenAPI: ${api.url}/openapi.json)`);
    say(`Dashboard    ${api.url}/dashboard  (sign in with a token from npm run token)`);
    if (temporalUi) say(`Temporal UI  ${temporalUi}`);
    if (mailUi) say(`Mail (mailpit)  ${mailUi}`);
    say(`Admin token  npm run token -- --admin`);
    say('Ready. Press Ctrl-C to stop.');
  } catch (err) {
    say(`Could not start: ${err instanceof Error ? err.message : String(err)}`);
    await shutdown(1);
  }
}

void main();
