// GET /docs works without internet: the page names no other host and its assets come from the API.
import { describe, expect, it } from 'vitest';
import { useTestApp } from '../../../test/helpers.js';

const t = useTestApp('docs');

/** Every URL the page loads: src and href attributes, and url(...) in inline styles. */
function referencedUrls(html: string): string[] {
  return [
    ...[...html.matchAll(/\b(?:src|href)\s*=\s*["']([^"']+)["']/gi)].map((m) => m[1]!),
    ...[...html.matchAll(/url\(\s*["']?([^"')]+)/gi)].map((m) => m[1]!),
  ];
}

describe('GET /docs', () => {
  it('serves Swagger UI that references no external host', async () => {
    const res = await t.app.request('/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).toContain('swagger-ui');
    expect(html).not.toMatch(/https?:\/\//i);
    const urls = referencedUrls(html);
    expect(urls.length).toBeGreaterThanOrEqual(3);
    for (const url of urls) {
      // Same origin only: a path, never a scheme or a protocol-relative //host.
      expect(url).toMatch(/^\/(?!\/)/);
    }
  });

  it('answers 200 for every asset the page references, with its content type', async () => {
    const html = await (await t.app.request('/docs')).text();
    for (const url of referencedUrls(html)) {
      const res = await t.app.request(url);
      expect(res.status, url).toBe(200);
      const type = res.headers.get('content-type') ?? '';
      if (url.endsWith('.js')) expect(type).toMatch(/javascript/);
      if (url.endsWith('.css')) expect(type).toMatch(/text\/css/);
      const body = new Uint8Array(await res.arrayBuffer());
      expect(body.length, url).toBeGreaterThan(0);
    }
    // The scripts the page needs, and the spec they load.
    const scripts = await Promise.all(
      referencedUrls(html)
        .filter((u) => u.endsWith('.js'))
        .map(async (u) => (await t.app.request(u)).text()),
    );
    expect(scripts.join('\n')).toContain('SwaggerUIBundle');
    expect(scripts.join('\n')).toContain("url: '/openapi.json'");
    expect((await t.app.request('/openapi.json')).status).toBe(200);
  });

  it('serves only the files it lists', async () => {
    for (const path of [
      '/docs/assets/package.json',
      '/docs/assets/..%2F..%2Fpackage.json',
      '/docs/assets/index.html',
    ]) {
      const res = await t.app.request(path);
      expect(res.status, path).toBe(404);
    }
  });
});
