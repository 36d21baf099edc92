// Builds the HTTP API from its dependencies; only src/server.ts listens on a port.
import { withCommonResponses } from './openapi-common.js';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler, Next } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { routePath } from 'hono/route';
import { adjustmentRoutes } from './adjustments/routes.js';
import { adminRoutes } from './admin/routes.js';
import { adminOnly, authenticate, type AuthEnv, type AuthSettings } from './auth.js';
import { checkoutRoutes } from './checkouts/routes.js';
import type { AppDeps } from './common.js';
import { customerRoutes } from './customers/routes.js';
import { dashboardRoutes } from './dashboard/routes.js';
import { disputeRoutes } from './disputes/routes.js';
import { docsRoutes } from './docs/routes.js';
import { grantRoutes } from './grants/routes.js';
import { ApiError, errorBody, handleError, validationHook } from './errors.js';
import { healthRoutes } from './health/routes.js';
import { itemRoutes } from './items/routes.js';
import { notificationRoutes } from './notifications/routes.js';
import { orderRoutes } from './orders/routes.js';
import {
  DEFAULT_RATE_LIMITS,
  createRateLimits,
  rateLimitByCustomer,
  rateLimitByIp,
  rateLimitMetrics,
} from './rate-limit.js';
import { createMetrics } from '../metrics.js';
import { observeRequests } from '../observability/http.js';
import { walletAlertRoutes } from './wallet/alerts.js';
import { autoTopupRoutes } from './wallet/auto-topup.js';
import { createStreamSlots, createWalletEventHub } from './wallet/events.js';
import { walletRoutes } from './wallet/routes.js';
import { priceRoutes } from './prices/routes.js';
import { reconciliationRoutes } from './reconciliations/routes.js';
import { corsAllowList, guardMetrics, secureResponses, type SecurityOptions } from './security.js';
import { refundRoutes } from './refunds/routes.js';
import { verificationRoutes } from './verifications/routes.js';
import { smsWebhookRoutes } from './webhooks/sms.js';
import { stripeWebhookRoutes } from './webhooks/stripe.js';

export type { AppDeps } from './common.js';

/** Body caps per kind of route, in bytes: provider webhooks are small, API bodies a little larger. */
export const BODY_LIMITS = {
  stripeWebhook: 256 * 1024,
  smsWebhook: 16 * 1024,
  api: 64 * 1024,
} as const;

/** Refuses a body above `maxSize` with 413 before reading it (by Content-Length) or while reading it. */
function capBody(maxSize: number): MiddlewareHandler {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new ApiError(
        413,
        'payload_too_large',
        `The request body is larger than the ${maxSize} bytes this route accepts.`,
      );
    },
  });
}

export interface AppOptions {
  defaultMetrics?: boolean;
  /** Secure headers, CORS allow-list and who may read /metrics (open when absent). */
  security?: SecurityOptions;
  /** Token verification beyond `deps.jwtSecret`: a JWKS, required issuer and audience. */
  auth?: Omit<AuthSettings, 'maxLifetimeSeconds'>;
  /** Open wallet event streams per customer (5 when absent). */
  sseMaxStreamsPerCustomer?: number;
  /** Open wallet event streams in this process, all customers together (1000 when absent). */
  sseMaxStreamsPerProcess?: number;
}

export function createApp(deps: AppDeps, options: AppOptions = {}) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });
  const metrics = deps.metrics ?? createMetrics(options);

  // First: the request id and span cover everything below, the request log line included.
  app.use('*', ...observeRequests());
  app.use('*', async (c: Context, next: Next) => {
    const started = performance.now();
    await next();
    const route = routePath(c, -1) || 'unmatched';
    metrics.httpRequests.inc({ method: c.req.method, route, status: String(c.res.status) });
    metrics.httpDuration.observe(
      { method: c.req.method, route },
      (performance.now() - started) / 1000,
    );
    if (c.res.status >= 500) {
      deps.logger.warn({ method: c.req.method, route, status: c.res.status }, 'request failed');
    } else if (deps.logger.isLevelEnabled('debug')) {
      // Headers and URL as received: the logger's redaction censors credentials and masks e-mails.
      const url = new URL(c.req.url);
      deps.logger.debug(
        {
          method: c.req.method,
          url: url.pathname + url.search,
          route,
          status: c.res.status,
          headers: Object.fromEntries(c.req.raw.headers),
        },
        'request',
      );
    }
  });
  app.use('*', secureResponses(options.security));
  app.use('*', corsAllowList(options.security?.corsOrigins ?? []));
  app.use('/metrics', guardMetrics(options.security?.metrics ?? { mode: 'open' }));

  app.route('/', healthRoutes(deps, metrics.registry));
  const openApiConfig = {
    openapi: '3.1.0',
    info: {
      title: 'creditflow API',
      version: '1',
      description:
        'Credits and payments: every money movement is a Temporal workflow over a double-entry ledger. ' +
        'Errors are `{ "error": { "code", "message" } }`.',
    },
  };
  app.get('/openapi.json', (c) =>
    c.json(withCommonResponses(app.getOpenAPI31Document(openApiConfig))),
  );
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
  });
  app.route('/', docsRoutes());
  app.route('/', dashboardRoutes());

  app.use('/webhooks/sms', capBody(BODY_LIMITS.smsWebhook));
  app.route('/', smsWebhookRoutes(deps));

  // Public: Stripe signs these; the route verifies the raw body itself.
  app.use('/webhooks/stripe', capBody(BODY_LIMITS.stripeWebhook));
  app.route('/', stripeWebhookRoutes({ ...deps, metrics }));

  // Only /v1 is limited: webhooks (Stripe retries), health and metrics never are. Per IP before
  // authentication, so floods of bad tokens are limited too; per principal after it.
  const rateLimits = deps.rateLimits ?? createRateLimits(DEFAULT_RATE_LIMITS, deps.logger);
  const limitMetrics = rateLimitMetrics(metrics.registry);
  app.use(
    '/v1/*',
    rateLimitByIp(rateLimits, limitMetrics, { trustProxy: options.security?.trustProxy ?? false }),
  );
  app.use(
    '/v1/*',
    authenticate({
      // An empty secret means HS256 is off (an identity provider's JWKS verifies the tokens).
      secret: deps.jwtSecret || undefined,
      maxLifetimeSeconds: deps.maxTokenLifetimeSeconds,
      ...options.auth,
    }),
  );
  app.use('/v1/*', rateLimitByCustomer(rateLimits, limitMetrics));
  app.use('/v1/*', capBody(BODY_LIMITS.api));
  // Role before validation: a customer token on an admin route is 403 whatever it sent.
  app.use('/v1/admin/*', adminOnly);
  app.get('/v1/customers/', () => {
    throw new ApiError(
      400,
      'invalid_reference',
      'Empty customer reference: pass an id, e-mail or external id.',
    );
  });
  app.route('/', customerRoutes(deps));
  const walletEvents = deps.walletEvents ?? createWalletEventHub(deps.db.sql, deps.logger);
  const streamSlots = createStreamSlots(
    options.sseMaxStreamsPerCustomer,
    options.sseMaxStreamsPerProcess,
  );
  app.route('/', walletRoutes({ ...deps, walletEvents, streamSlots }));
  app.route('/', walletAlertRoutes(deps));
  app.route('/', autoTopupRoutes(deps));
  app.route('/', adjustmentRoutes(deps));
  app.route('/', grantRoutes(deps));
  app.route('/', notificationRoutes(deps));
  app.route('/', priceRoutes(deps));
  app.route('/', verificationRoutes(deps));
  app.route('/', itemRoutes(deps));
  app.route('/', orderRoutes(deps));
  app.route('/', checkoutRoutes(deps));
  app.route('/', refundRoutes(deps));
  app.route('/', adminRoutes(deps));
  app.route('/', disputeRoutes(deps));
  app.route('/', reconciliationRoutes(deps));

  app.notFound((c) =>
    c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path}.`), 404),
  );
  app.onError(handleError(deps.logger));
  return app;
}

export type App = ReturnType<typeof createApp>;
