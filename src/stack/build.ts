// `npm run build` at most once for what the sources are now: a lock keeps two callers (the stack
// script, the build test, the stack test) from building into the same dist/ at the same time, and
// a stamp of the inputs lets the later ones use the build the first one made.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { projectRoot } from '../paths.js';
import type { Log } from './tools.js';

/** What the build reads: a change to any of them makes dist/ stale. */
const INPUTS = [
  'src',
  'scripts',
  'drizzle',
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'tsconfig.build.json',
];

/** A digest of the inputs' paths, sizes and modification times (cheap, and enough to spot an edit). */
export function buildInputsDigest(root = projectRoot): string {
  const hash = createHash('sha256');
  const visit = (path: string) => {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      return;
    }
    if (stat.isDirectory()) {
      for (const entry of readdirSync(path).sort()) visit(join(path, entry));
    } else {
      hash.update(`${relative(root, path)}\0${stat.size}\0${stat.mtimeMs}\n`);
    }
  };
  for (const input of INPUTS) visit(join(root, input));
  return hash.digest('hex');
}

const stampFile = (root: string) => join(root, 'dist', '.build-inputs');
const lockDir = (root: string) => join(root, '.data', 'build.lock');

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Takes the build lock (a directory, created atomically); a dead holder's lock is taken over. */
async function acquireLock(root: string, log: Log): Promise<() => void> {
  const dir = lockDir(root);
  mkdirSync(join(root, '.data'), { recursive: true });
  let said = false;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: number | undefined;
    try {
      holder = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    } catch {
      holder = undefined;
    }
    // A holder that died, or one that died between making the lock and writing its pid.
    const orphaned =
      holder === undefined || !Number.isInteger(holder)
        ? Date.now() - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? 0) > 10_000
        : !isAlive(holder);
    if (orphaned) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (!said) {
      log(`Waiting for another build of dist/ to finish (${dir})…`);
      said = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * Runs `npm run build` unless dist/ was built from the current inputs; answers whether it built.
 * `force` builds regardless.
 */
export async function ensureBuild(
  options: { log: Log; force?: boolean; root?: string } = { log: () => undefined },
): Promise<boolean> {
  const root = options.root ?? projectRoot;
  const release = await acquireLock(root, options.log);
  try {
    const digest = buildInputsDigest(root);
    let built: string | undefined;
    try {
      built = readFileSync(stampFile(root), 'utf8');
    } catch {
      built = undefined;
    }
    if (!options.force && built === digest) return false;
    options.log('Building dist/ (npm run build)…');
    const started = Date.now();
    const output: string[] = [];
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn('npm', ['run', '-s', 'build'], {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', (d: Buffer) => output.push(d.toString()));
      child.stderr.on('data', (d: Buffer) => output.push(d.toString()));
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) {
      throw new Error(`npm run build failed (exit ${code}):\n${output.join('').slice(-4000)}`);
    }
    writeFileSync(stampFile(root), digest);
    options.log(`Built dist/ in ${Math.round((Date.now() - started) / 1000)} s.`);
    return true;
  } finally {
    release();
  }
}
