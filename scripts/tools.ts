// `npm run tools`: finds or builds the Go tools (Temporal CLI, stripe-mock, mailpit, and the
// Temporal server with its sql tool and the Temporal UI server for `npm run stack:prod`) into the
// per-user cache.
import { processEnv } from '../src/config.js';
import {
  MAILPIT,
  STRIPE_MOCK,
  TEMPORAL_CLI,
  TEMPORAL_SERVER,
  TEMPORAL_UI,
  ensureTemporalServer,
  ensureTool,
} from '../src/stack/tools.js';

const env = processEnv();
const log = (m: string) => console.log(m);
let missing = 0;
for (const spec of [TEMPORAL_CLI, STRIPE_MOCK, MAILPIT, TEMPORAL_UI]) {
  const path = await ensureTool(spec, env, log);
  if (path) console.log(`${spec.label}: ${path}`);
  else {
    console.log(
      `${spec.label}: not found, and Go is not installed to build it (go install ${spec.goPackage}).`,
    );
    missing++;
  }
}
const server = await ensureTemporalServer(env, log).catch((err: unknown) => {
  // A TEMPORAL_SERVER_DIR that lacks a part: say which, without a stack trace.
  console.log((err as Error).message);
  return null;
});
if (server) console.log(`${TEMPORAL_SERVER.label}: ${server.dir}`);
else if (server === null) missing++;
else {
  console.log(
    `${TEMPORAL_SERVER.label}: not found, and Go is not installed to build it ` +
      `(go install ${TEMPORAL_SERVER.module}/cmd/server@${TEMPORAL_SERVER.version}).`,
  );
  missing++;
}
process.exitCode = missing > 0 ? 1 : 0;
