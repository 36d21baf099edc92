// A production-shaped stack whose start was killed outright leaves its processes running and its
// databases behind; the next start stops those processes (only if each still runs the program
// that was started) and drops the databases of a throw-away stack, never touching a stack whose
// owner is alive.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, describe, expect, inject, it } from 'vitest';
import {
  PIDS_DIR,
  STACK_RECORD,
  isAlive,
  reapOrphans,
  writePidRecord,
  writeStackRecord,
} from '../src/stack/orphans.js';

const root = mkdtempSync(join(tmpdir(), 'creditflow-orphans-'));
const server = new URL(inject('ownerDatabaseUrl'));
server.pathname = '/postgres';
const serverUrl = server.toString();
const admin = postgres(serverUrl, { max: 1, onnotice: () => undefined });
const children: number[] = [];

afterAll(async () => {
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await admin.end({ timeout: 5 });
  rmSync(root, { recursive: true, force: true });
});

/** The pid of a process that has exited: an owner that was killed. */
function deadPid(): number {
  const run = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  const pid = Number(run.stdout);
  expect(isAlive(pid)).toBe(false);
  return pid;
}

/** A long-running process in a group of its own, as the stack starts them. */
function longRunning(): number {
  const child = spawn('/bin/sleep', ['300'], { detached: true, stdio: 'ignore' });
  child.unref();
  children.push(child.pid!);
  return child.pid!;
}

function stackDir(name: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, PIDS_DIR), { recursive: true });
  return dir;
}

const serverKey = `${server.hostname}:${server.port || '5432'}`;

/** Records stack `name` in its folder as a start by `ownerPid` would have. */
function recordStack(
  dir: string,
  name: string,
  record: { ownerPid: number; databases: string[]; ephemeral: boolean },
): void {
  writeStackRecord(dir, { name, server: serverKey, appRole: `${name}_app`, ...record });
}

describe('a stack whose start was killed outright', () => {
  it('has its processes stopped and its throw-away databases and role dropped', async () => {
    const name = `orphan_${randomBytes(4).toString('hex')}`;
    const owner = deadPid();
    const dir = stackDir(name);
    const databases = [name, `${name}_temporal`];
    for (const db of databases) await admin.unsafe(`create database "${db}"`);
    await admin.unsafe(`create role "${name}_app" login`);
    recordStack(dir, name, { ownerPid: owner, databases, ephemeral: true });
    const orphan = longRunning();
    writePidRecord(join(dir, PIDS_DIR, 'worker-1.json'), {
      name: 'worker 1',
      pid: orphan,
      command: '/bin/sleep',
    });
    // A pid that now runs another program (reused) is not the stack's: left alone.
    const stranger = longRunning();
    writePidRecord(join(dir, PIDS_DIR, 'api-1.json'), {
      name: 'API 1',
      pid: stranger,
      command: '/usr/bin/some-other-program',
    });
    // A pid reused since: the same program, but not the process that was started.
    const reused = longRunning();
    writePidRecord(join(dir, PIDS_DIR, 'worker-2.json'), {
      name: 'worker 2',
      pid: reused,
      command: '/bin/sleep',
    });
    const reusedPath = join(dir, PIDS_DIR, 'worker-2.json');
    writeFileSync(
      reusedPath,
      JSON.stringify({
        ...(JSON.parse(readFileSync(reusedPath, 'utf8')) as object),
        startTicks: '1',
      }),
    );
    // The records are the owner's: rewrite them as the killed owner's.
    for (const file of ['worker-1.json', 'api-1.json', 'worker-2.json']) {
      const path = join(dir, PIDS_DIR, file);
      const record = JSON.parse(readFileSync(path, 'utf8')) as object;
      writeFileSync(path, JSON.stringify({ ...record, ownerPid: owner }));
    }

    const lines: string[] = [];
    const reaped = await reapOrphans(root, serverUrl, (m) => lines.push(m), 2_000);
    expect(reaped).toMatchObject({ processes: 1, stacks: 1 });
    await expect.poll(() => isAlive(orphan)).toBe(false);
    expect(isAlive(stranger)).toBe(true);
    expect(isAlive(reused)).toBe(true);
    const left = await admin<{ datname: string }[]>`
      select datname from pg_database where datname in ${admin(databases)}`;
    expect(left).toEqual([]);
    const [role] = await admin`select 1 from pg_roles where rolname = ${`${name}_app`}`;
    expect(role).toBeUndefined();
    expect(existsSync(join(dir, STACK_RECORD))).toBe(false);
    expect(lines.join('\n')).toContain(`Stopping worker 1 (pid ${orphan}) of stack ${name}`);
  });

  it('keeps the databases of a stack that was to keep them, and says so', async () => {
    const name = `orphan_${randomBytes(4).toString('hex')}`;
    const dir = stackDir(name);
    await admin.unsafe(`create database "${name}"`);
    try {
      recordStack(dir, name, { ownerPid: deadPid(), databases: [name], ephemeral: false });
      const lines: string[] = [];
      await reapOrphans(root, serverUrl, (m) => lines.push(m), 2_000);
      const [kept] = await admin`select 1 from pg_database where datname = ${name}`;
      expect(kept).toBeDefined();
      expect(lines.join('\n')).toContain(`its databases ${name}`);
      expect(existsSync(join(dir, STACK_RECORD))).toBe(false);
    } finally {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
    }
  });

  it('leaves a stack whose owner is alive alone', async () => {
    const name = `orphan_${randomBytes(4).toString('hex')}`;
    const dir = stackDir(name);
    recordStack(dir, name, {
      ownerPid: process.pid,
      databases: [`${name}_never_created`],
      ephemeral: true,
    });
    const running = longRunning();
    writePidRecord(join(dir, PIDS_DIR, 'worker-1.json'), {
      name: 'worker 1',
      pid: running,
      command: '/bin/sleep',
    });
    await reapOrphans(root, serverUrl, () => undefined, 2_000);
    expect(isAlive(running)).toBe(true);
    expect(existsSync(join(dir, STACK_RECORD))).toBe(true);
  });
});
