// GET /docs: Swagger UI served from the API itself (swagger-ui-dist), so it works offline.
import { Hono } from 'hono';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The files of swagger-ui-dist the page needs, with their content types. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

const assetDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

// Same-origin only: no CDN, no validator service, nothing that needs the internet.
const INIT_SCRIPT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    validatorUrl: null,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: 'BaseLayout',
  });
});
`;

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>creditflow API</title>
    <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" />
    <link rel="stylesheet" href="/docs/assets/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/assets/swagger-ui-bundle.js"></script>
    <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
    <script src="/docs/assets/init.js"></script>
  </body>
</html>
`;

/** The docs page and its assets; public, like /openapi.json. */
export function docsRoutes() {
  const app = new Hono();
  const cache = new Map<string, Uint8Array<ArrayBuffer>>();

  /** The Swagger UI page for /openapi.json. */
  app.get('/docs', (c) => c.html(PAGE));

  /** The page's scripts and styles, from the installed swagger-ui-dist package. */
  app.get('/docs/assets/:file', async (c) => {
    const file = c.req.param('file');
    if (file === 'init.js') {
      c.header('content-type', 'text/javascript; charset=utf-8');
      return c.body(INIT_SCRIPT);
    }
    const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
    if (!type) return c.notFound();
    let content = cache.get(file);
    if (!content) {
      content = new Uint8Array(await readFile(join(assetDir, file)));
      cache.set(file, content);
    }
    c.header('content-type', type);
    c.header('cache-control', 'public, max-age=86400');
    return c.body(content);
  });

  return app;
}
