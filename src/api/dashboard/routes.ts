// GET /dashboard: the customers' and operators' web app. Static files from src/dashboard/static,
// all same-origin (no CDN), under a strict CSP of their own: scripts, styles and calls to 'self'
// only, no inline script. The page talks to /v1 with the bearer token the user signs in with.
import { Hono } from 'hono';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** Where the page's files live: beside this router's tree, so the compiled build finds them too. */
export const DASHBOARD_DIR = fileURLToPath(new URL('../../dashboard/static/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
};

/** Only what the page may load: its own scripts, styles and API; nothing inline, no frames. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** A file name the dashboard serves: one flat folder, no paths, a known extension. */
const FILE_NAME = /^[a-z][a-z0-9-]{0,40}\.(html|js|css|svg)$/;

/** The dashboard page and its files; public (the data behind it needs a token). */
export function dashboardRoutes(dir: string = DASHBOARD_DIR) {
  const app = new Hono();
  const cache = new Map<string, Uint8Array<ArrayBuffer>>();

  async function serve(file: string): Promise<Response | undefined> {
    const match = FILE_NAME.exec(file);
    if (!match) return undefined;
    let content = cache.get(file);
    if (!content) {
      try {
        content = new Uint8Array(await readFile(`${dir}${file}`));
      } catch {
        return undefined;
      }
      cache.set(file, content);
    }
    return new Response(content, {
      headers: {
        'content-type': CONTENT_TYPES[match[1]!]!,
        // Revalidated on each load, so a new release is seen at once.
        'cache-control': 'no-cache',
        'content-security-policy': DASHBOARD_CSP,
      },
    });
  }

  /** The single page; the views (sign-in, customer, admin) are chosen in the page. */
  app.get('/dashboard', async (c) => (await serve('index.html')) ?? c.notFound());
  app.get('/dashboard/', (c) => c.redirect('/dashboard', 301));

  /** The page's modules, styles and icon. */
  app.get('/dashboard/:file', async (c) => (await serve(c.req.param('file'))) ?? c.notFound());

  return app;
}
