// GET /dashboard works without internet and under its own strict CSP: every file it loads comes
// from the API, nothing is inline, and only the files of its folder are served.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useTestApp } from '../../../test/helpers.js';
import { DASHBOARD_CSP, DASHBOARD_DIR } from './routes.js';

const t = useTestApp('dashboard-routes');

describe('GET /dashboard', () => {
  it('serves the page with a CSP of its own: self only, no inline script or style', async () => {
    const res = await t.app.request('/dashboard');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toBe(DASHBOARD_CSP);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/unsafe|\*|https?:|data:/);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|<style/i);
  });

  it('answers every file of the folder with its type, and none of them names another host', async () => {
    const files = readdirSync(DASHBOARD_DIR);
    expect(files).toEqual(expect.arrayContaining(['index.html', 'app.js', 'style.css']));
    for (const file of files) {
      const res = await t.app.request(`/dashboard/${file}`);
      expect(res.status, file).toBe(200);
      const type = res.headers.get('content-type') ?? '';
      if (file.endsWith('.js')) expect(type, file).toMatch(/javascript/);
      if (file.endsWith('.css')) expect(type, file).toMatch(/text\/css/);
      expect(res.headers.get('content-security-policy'), file).toBe(DASHBOARD_CSP);
      // An SVG's namespace is a name, not a place anything is loaded from.
      const text = readFileSync(`${DASHBOARD_DIR}${file}`, 'utf8').replace(
        'xmlns="http://www.w3.org/2000/svg"',
        '',
      );
      expect(text, file).not.toMatch(/https?:\/\//);
    }
  });

  it('serves nothing outside its folder and answers unknown files with the API’s 404', async () => {
    for (const path of [
      '/dashboard/..%2Fapi%2Fapp.ts',
      '/dashboard/%2E%2E/package.json',
      '/dashboard/routes.ts',
      '/dashboard/missing.js',
      '/dashboard/.env',
    ]) {
      const res = await t.app.request(path);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code, path).toBe(
        'not_found',
      );
    }
    const slash = await t.app.request('/dashboard/');
    expect(slash.status).toBe(301);
    expect(slash.headers.get('location')).toBe('/dashboard');
  });
});
