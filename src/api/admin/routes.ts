// The operator's views: health, monitor, one customer's consistency, alerts, GDPR erasure.
import { OpenAPIHono } from '@hono/zod-openapi';
import type { AuthEnv } from '../auth.js';
import type { AppDeps } from '../common.js';
import { validationHook } from '../errors.js';
import { alertRoutes } from './alerts.js';
import { adminAnonymiseRoutes } from './anonymise.js';
import { adminConsistencyRoutes } from './consistency.js';
import { adminHealthRoutes } from './health.js';
import { adminMonitorRoutes } from './monitor.js';

export function adminRoutes(deps: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });
  app.route('/', adminHealthRoutes(deps));
  app.route('/', adminMonitorRoutes(deps));
  app.route('/', adminConsistencyRoutes(deps));
  app.route('/', alertRoutes(deps));
  app.route('/', adminAnonymiseRoutes(deps));
  return app;
}
