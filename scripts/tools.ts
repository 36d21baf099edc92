// `npm run tools`: finds or builds the Go tools (Temporal CLI, stripe-mock, mailpit) into the per-user cache.
import { processEnv } from '../src/config.js';
import { MAILPIT, STRIPE_MOCK, TEMPORAL_CLI, ensureTool } from '../src/stack/tools.js';

const env = processEnv();
let missing = 0;
for (const spec of [TEMPORAL_CLI, STRIPE_MOCK, MAILPIT]) {
  const path = await ensureTool(spec, env, (m) => console.log(m));
  if (path) console.log(`${spec.label}: ${path}`);
  else {
    console.log(
      `${spec.label}: not found, and Go is not installed to build it (go install ${spec.goPackage}).`,
    );
    missing++;
  }
}
process.exitCode = missing > 0 ? 1 : 0;
