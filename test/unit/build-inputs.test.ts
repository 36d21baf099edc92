// dist/ is rebuilt exactly when what the build reads has changed.
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildInputsDigest } from '../../src/stack/build.js';

let root: string | undefined;
afterEach(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function project(): string {
  root = mkdtempSync(join(tmpdir(), 'creditflow-build-inputs-'));
  mkdirSync(join(root, 'src'));
  writeFileSync(join(root, 'src', 'a.ts'), 'export const a = 1;\n');
  writeFileSync(join(root, 'package.json'), '{}\n');
  return root;
}

describe('the build inputs digest', () => {
  it('stays the same while nothing the build reads changes, whatever happens in dist/', () => {
    const dir = project();
    const before = buildInputsDigest(dir);
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', 'a.js'), 'export const a = 1;\n');
    writeFileSync(join(dir, 'README.md'), 'notes\n');
    expect(buildInputsDigest(dir)).toBe(before);
  });

  it('changes when a source is edited, added or removed', () => {
    const dir = project();
    const before = buildInputsDigest(dir);
    utimesSync(join(dir, 'src', 'a.ts'), new Date(), new Date(Date.now() + 5_000));
    const edited = buildInputsDigest(dir);
    expect(edited).not.toBe(before);
    writeFileSync(join(dir, 'src', 'b.ts'), 'export const b = 2;\n');
    const added = buildInputsDigest(dir);
    expect(added).not.toBe(edited);
    rmSync(join(dir, 'src', 'b.ts'));
    expect(buildInputsDigest(dir)).toBe(edited);
  });
});
