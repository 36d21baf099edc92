// Runs after every `npm install` / `npm ci` (the package's postinstall), in development, in CI
// and in the production image. Plain node, no dependencies: it runs before anything is built.
//
// postgres (postgres.js) 3.4.9 buffers small writes and flushes them on the next turn of the
// event loop. When PostgreSQL drops the connection in between (pg_terminate_backend, a restart,
// a proxy closing idle sockets) the flush writes to a socket that is already gone and throws
// from a timer callback: no caller can catch it and the whole process exits. A transaction
// whose backend dies is enough (its ROLLBACK is such a write). Reported upstream as
// porsager/postgres#1154 and #1208, not fixed in a release yet.
//
// The guard: a flush that finds no socket rejects the connection's queries with
// CONNECTION_CLOSED (a normal, catchable error the callers already retry) instead of throwing,
// and closing a connection forgets any buffered bytes so a reconnect starts clean.
// test/pg-closed-connection.test.ts proves the behaviour; remove this script once a postgres
// release carries an equivalent fix (the script says so when it no longer finds the code).

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkgDir = join(root, 'node_modules', 'postgres');
const MARKER = '/* creditflow: closed-socket guard */';
const PATCHED_VERSIONS = ['3.4.9'];

const edits = [
  {
    what: 'flush guard',
    from: '  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)',
    to:
      '  function nextWrite(fn) {\n' +
      `    ${MARKER}\n` +
      '    if (socket === null) {\n' +
      "      const err = Errors.connection('CONNECTION_CLOSED', options)\n" +
      '      nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n' +
      '      chunk = nextWriteTimer = null\n' +
      '      error(err)\n' +
      '      fn && fn(err)\n' +
      '      return false\n' +
      '    }\n' +
      '    const x = socket.write(chunk, fn)',
  },
  {
    what: 'forget buffered bytes on close',
    from: '    incomings = null\n    clearImmediate(nextWriteTimer)\n',
    to: '    incomings = null\n    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n',
  },
];

function main() {
  if (!existsSync(join(pkgDir, 'package.json'))) return; // not installed (yet): nothing to do
  const version = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).version;
  const files = ['src/connection.js', 'cjs/src/connection.js', 'cf/src/connection.js']
    .map((f) => join(pkgDir, f))
    .filter((f) => existsSync(f));

  let patched = 0;
  for (const file of files) {
    let text = readFileSync(file, 'utf8');
    if (text.includes(MARKER)) continue;
    const missing = edits.filter((e) => text.split(e.from).length !== 2);
    if (missing.length > 0) {
      const msg =
        `postgres ${version}: ${file} does not hold the code the closed-socket guard expects ` +
        `(${missing.map((e) => e.what).join(', ')}).`;
      if (PATCHED_VERSIONS.includes(version)) {
        console.error(`${msg} The install is incomplete; see scripts/patch-deps.js.`);
        process.exit(1);
      }
      console.warn(
        `${msg} Not patched: check whether this release fixes porsager/postgres#1208 ` +
          '(test/pg-closed-connection.test.ts tells) and drop scripts/patch-deps.js if it does.',
      );
      return;
    }
    for (const e of edits) text = text.replace(e.from, e.to);
    writeFileSync(file, text);
    patched++;
  }
  if (patched > 0)
    console.log(`postgres ${version}: closed-socket guard applied (${patched} files)`);
}

main();
