// Liveness, readiness (database and Temporal reachable) and Prometheus metrics.
import { Hono } from 'hono';
import type { Registry } from 'prom-client';
import type { AppDeps } from '../common.js';

export function healthRoutes({ db, temporal, logger }: AppDeps, registry: Registry) {
  const app = new Hono();

  /** The process is up. */
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  /** Both backing services answer; 503 names the one that does not. */
  app.get('/readyz', async (c) => {
    const check = async (name: string, probe: () => Promise<unknown>) => {
      try {
        await probe();
        return [name, 'ok'] as const;
      } catch (err) {
        logger.warn({ err, dependency: name }, 'readiness check failed');
        return [name, 'unreachable'] as const;
      }
    };
    const results = await Promise.all([
      check('database', () => db.sql`select 1`),
      check('temporal', () =>
        temporal.connection.withDeadline(Date.now() + 2000, () =>
          temporal.workflowService.getSystemInfo({}),
        ),
      ),
    ]);
    const checks = Object.fromEntries(results);
    const ready = results.every(([, state]) => state === 'ok');
    return c.json({ status: ready ? 'ready' : 'not_ready', checks }, ready ? 200 : 503);
  });

  /** Prometheus exposition. */
  app.get('/metrics', async (c) => {
    c.header('content-type', registry.contentType);
    return c.body(await registry.metrics());
  });

  return app;
}
