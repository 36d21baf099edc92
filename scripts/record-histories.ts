// `npm run histories:record [-- <test files>]`: records the workflow histories the replay tests
// need. Runs the tests that keep named runs (every file calling keepHistory, or the files given)
// with RECORD_HISTORIES=1 against the test stack, so each named run's history lands in
// test/histories; existing histories are never overwritten. Then reports which patch ids in
// src/workflows no recorded history has taken yet, and exits 1 if any.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processEnv } from '../src/config.js';
import {
  historyFiles,
  patchIdsIn,
  patchIdsInWorkflows,
  readHistory,
} from '../test/history-files.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Test files under a folder that keep a named run's history. */
function keepingFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return entry === 'node_modules' ? [] : keepingFiles(path);
    return path.endsWith('.test.ts') && readFileSync(path, 'utf8').includes('keepHistory(')
      ? [relative(root, path)]
      : [];
  });
}

const given = process.argv.slice(2);
const files =
  given.length > 0
    ? given
    : [...keepingFiles(join(root, 'test')), ...keepingFiles(join(root, 'src'))];
const before = new Set(historyFiles());

console.log(`Recording histories from: ${files.join(', ')}`);
const run = spawnSync(
  process.execPath,
  [join(root, 'node_modules/vitest/vitest.mjs'), 'run', '--project', 'integration', ...files],
  { cwd: root, stdio: 'inherit', env: { ...processEnv(), RECORD_HISTORIES: '1' } },
);

const added = historyFiles().filter((f) => !before.has(f));
console.log(
  added.length > 0
    ? `New histories in test/histories:\n${added.map((f) => `  ${f}`).join('\n')}`
    : 'No new histories (existing ones are kept as they are).',
);

const byPatch = new Map<string, string[]>();
for (const file of historyFiles()) {
  for (const id of patchIdsIn(readHistory(file)))
    byPatch.set(id, [...(byPatch.get(id) ?? []), file]);
}
let uncovered = 0;
for (const { id, file } of patchIdsInWorkflows()) {
  const recorded = byPatch.get(id) ?? [];
  if (recorded.length === 0) uncovered++;
  console.log(
    recorded.length > 0
      ? `  patch ${id} (${file}): ${recorded.join(', ')}`
      : `  patch ${id} (${file}): NO HISTORY - add keepHistory() to a test whose run takes it`,
  );
}
if (run.status !== 0) console.log('Some tests failed: histories of failed runs were not kept.');
process.exitCode = run.status !== 0 || uncovered > 0 ? 1 : 0;
