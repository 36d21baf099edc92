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
// The guard, in three places: a query on a connection whose socket is gone is rejected with
// CONNECTION_CLOSED (a normal, catchable error the callers already retry) instead of being
// written; a flush that finds no socket rejects its queries instead of throwing; closing a
// connection forgets any buffered bytes so a reconnect starts clean. And in the pool: a
// transaction (or reserved connection) whose connection closed takes no more statements — they
// are rejected at once rather than written to the closed connection, which would otherwise be
// parked in the pool's "full" queue for good — and releasing a reserved connection that closed
// does not put it back among the open ones. test/pg-closed-connection.test.ts proves the
// behaviour; remove this script once a postgres release carries an equivalent fix (the script
// says so when it no longer finds the code).

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkgDir = join(root, 'node_modules', 'postgres');
const MARKER = '/* creditflow: closed-connection guard */';
const PATCHED_VERSIONS = ['3.4.9'];

/** The edits, by file (relative to src/, cjs/src/ and cf/src/, which hold the same code). */
const edits = {
  'connection.js': [
    {
      what: 'a query on a connection whose socket is gone',
      from: "    if (terminated)\n      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))\n",
      to:
        "    if (terminated)\n      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))\n" +
        `    ${MARKER}\n` +
        '    if (socket === null)\n' +
        "      return (queryError(q, Errors.connection('CONNECTION_CLOSED', options)), true)\n",
    },
    {
      what: 'a buffered write flushed after the socket closed',
      from: '  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)',
      to:
        '  function nextWrite(fn) {\n' +
        '    if (socket === null) {\n' +
        "      const err = Errors.connection('CONNECTION_CLOSED', options)\n" +
        '      nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n' +
        '      chunk = nextWriteTimer = null\n' +
        '      query && queryError(query, err)\n' +
        '      while (sent.length) queryError(sent.shift(), err)\n' +
        '      fn && fn(err)\n' +
        '      return false\n' +
        '    }\n' +
        '    const x = socket.write(chunk, fn)',
    },
    {
      what: 'buffered bytes forgotten on close',
      from: '    incomings = null\n    clearImmediate(nextWriteTimer)\n',
      to: '    incomings = null\n    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n',
    },
  ],
  'index.js': [
    {
      what: 'a reserved connection that closed takes no more queries',
      from: '    function handler(q) {\n      c.queue === full\n        ? queue.push(q)\n        : c.execute(q) || move(c, full)\n    }\n',
      to:
        '    function handler(q) {\n' +
        `      ${MARKER}\n` +
        "      if (!c.reserved) return q.reject(Errors.connection('CONNECTION_CLOSED', options))\n" +
        '      c.queue === full\n        ? queue.push(q)\n        : c.execute(q) || move(c, full)\n    }\n',
    },
    {
      what: 'a released connection that closed is not put back as open',
      from: '    sql.release = () => {\n      c.reserved = null\n      onopen(c)\n    }\n',
      to:
        '    sql.release = () => {\n      c.reserved = null\n' +
        '      c.queue !== closed && c.queue !== connecting && onopen(c)\n    }\n',
    },
    {
      what: 'a transaction whose connection closed takes no more statements',
      from: '      function handler(q) {\n        q.catch(e => uncaughtError || (uncaughtError = e))\n        c.queue === full\n',
      to:
        '      function handler(q) {\n        q.catch(e => uncaughtError || (uncaughtError = e))\n' +
        "        if (!c.reserved) return q.reject(Errors.connection('CONNECTION_CLOSED', options))\n" +
        '        c.queue === full\n',
    },
  ],
};

function main() {
  if (!existsSync(join(pkgDir, 'package.json'))) return; // not installed (yet): nothing to do
  const version = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).version;
  let patched = 0;
  for (const [name, fileEdits] of Object.entries(edits)) {
    const files = ['src', 'cjs/src', 'cf/src']
      .map((dir) => join(pkgDir, dir, name))
      .filter((f) => existsSync(f));
    for (const file of files) {
      let text = readFileSync(file, 'utf8');
      if (text.includes(MARKER)) continue;
      const missing = fileEdits.filter((e) => text.split(e.from).length !== 2);
      if (missing.length > 0) {
        const msg =
          `postgres ${version}: ${file} does not hold the code the closed-connection guard ` +
          `expects (${missing.map((e) => e.what).join('; ')}).`;
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
      for (const e of fileEdits) text = text.replace(e.from, e.to);
      writeFileSync(file, text);
      patched++;
    }
  }
  if (patched > 0) {
    console.log(`postgres ${version}: closed-connection guard applied (${patched} files)`);
  }
}

main();
