// `npm run build`: the production build in dist/, run by plain node (README, "Production build").
//   dist/src/, dist/scripts/   tsc's JavaScript, same layout as the sources
//   dist/src/**                every other file under src/ (static assets found beside their module)
//   dist/workflow-bundle.js    the workflows prebundled, so a worker starts without webpack
//   dist/workflow-bundle-tracing.js   the same with OpenTelemetry's workflow interceptors
// Migrations stay in drizzle/ at the project root, beside dist/.
import { bundleWorkflowCode } from '@temporalio/worker';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { projectRoot } from '../src/paths.js';
import { workflowBundleOptions } from '../src/temporal.js';

const outDir = join(projectRoot, 'dist');
const say = (message: string) => process.stdout.write(`${message}\n`);

// From scratch: a file deleted from src/ must not live on in dist/.
rmSync(outDir, { recursive: true, force: true });

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
  cwd: projectRoot,
  stdio: 'inherit',
});
if (compiled.status !== 0) {
  process.stderr.write('build failed: tsc reported errors\n');
  process.exit(1);
}

let assets = 0;
const src = join(projectRoot, 'src');
for (const relative of readdirSync(src, { recursive: true, encoding: 'utf8' })) {
  const from = join(src, relative);
  if (relative.endsWith('.ts') || !statSync(from).isFile()) continue;
  const to = join(outDir, 'src', relative);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  assets += 1;
}

const quiet = () => undefined;
const bundlerLogger = {
  log: quiet,
  trace: quiet,
  debug: quiet,
  info: quiet,
  warn: (message: string) => process.stderr.write(`${message}\n`),
  error: (message: string) => process.stderr.write(`${message}\n`),
};
// Two bundles: the plain one, and one with OpenTelemetry's workflow interceptors for a worker
// that traces (OTEL_EXPORTER_OTLP_ENDPOINT); each worker picks the one for its setting.
const bundle = await bundleWorkflowCode(workflowBundleOptions(bundlerLogger));
writeFileSync(join(outDir, 'workflow-bundle.js'), bundle.code);
const tracingBundle = await bundleWorkflowCode(
  workflowBundleOptions(bundlerLogger, { tracing: true }),
);
writeFileSync(join(outDir, 'workflow-bundle-tracing.js'), tracingBundle.code);

say(
  `Built dist/: compiled src/ and scripts/, ${assets} asset file(s), workflow bundle ` +
    `${Math.round(bundle.code.length / 1024)} KiB.`,
);
