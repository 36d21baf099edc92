// `npm run bench`: every benchmark, one after the other — the ledger against pgbench
// (`bench/ledger.ts`), then the flows against bare-workflow baselines (`bench/flows.ts`). Each
// runs as its own process with its default settings, prints its table and writes its results
// under bench/results/; one that fails does not stop the next, and the exit code says whether
// all of them passed. `npm run bench:ledger -- …` and `npm run bench:flows -- …` take options.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const benches = [
  { name: 'ledger', file: 'ledger.ts' },
  { name: 'flows', file: 'flows.ts' },
] as const;

let child: ReturnType<typeof spawn> | undefined;
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted = true;
    // The running benchmark cleans up (drops its scratch databases, stops its servers) first.
    child?.kill(signal);
  });
}

function run(file: string): Promise<number> {
  return new Promise((done) => {
    child = spawn(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, file)], {
      stdio: 'inherit',
    });
    child.once('error', (err) => {
      console.error(`could not start ${file}: ${err.message}`);
      done(1);
    });
    child.once('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
}

const outcomes: Array<{ name: string; code: number; seconds: number }> = [];
for (const bench of benches) {
  if (interrupted) break;
  console.log(`\n=== ${bench.name} benchmark (bench/${bench.file})\n`);
  const began = performance.now();
  const code = await run(bench.file);
  outcomes.push({ name: bench.name, code, seconds: (performance.now() - began) / 1000 });
}

console.log('\n=== benchmarks');
for (const { name, code, seconds } of outcomes) {
  console.log(
    `  ${name.padEnd(8)} ${code === 0 ? 'done' : `failed (exit ${code})`} in ${seconds.toFixed(0)} s`,
  );
}
console.log(
  '  results: bench/results/ (ledger.json/.svg, flows.json/.md/.svg); README shows the tables',
);
process.exit(interrupted ? 130 : outcomes.some((o) => o.code !== 0) ? 1 : 0);
