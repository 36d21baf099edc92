// Liveness, readiness (services reachable, Temporal and database set up) and Prometheus metrics.
import { Hono } from 'hono';
import type { Registry } from 'prom-client';
import { createReadinessProbe } from '../../readiness/probe.js';
import type { AppDeps } from '../common.js';

export function healthRoutes({ db, temporal, logger }: AppDeps, registry: Registry) {
  const app = new Hono();

  /** The process is up. */
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  /**
   * Both backing services answer, the Temporal namespace and search attributes exist and the
   * database is migrated as far as this build; 503 names each missing piece and its fix.
   */
  const readiness = createReadinessProbe({ sql: db.sql, temporal, logger });
  app.get('/readyz', async (c) => {
    const { ready, checks, problems } = await readiness();
    return c.json(
      {
        status: ready ? 'ready' : 'not_ready',
        checks,
        ...(problems.length > 0 ? { problems } : {}),
      },
      ready ? 200 : 503,
    );
  });

  /** Prometheus exposition. */
  app.get('/metrics', async (c) => {
    c.header('content-type', registry.contentType);
    return c.body(await registry.metrics());
  });

  return app;
}
