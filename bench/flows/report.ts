// The flow benchmarks' report: a table on the console, flows.json, flows.md, a bar chart
// flows.svg, and the same table in the README's "Flow benchmarks" section.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FlowBenchResults } from '../flows.js';
import { formatMs, formatRatio, ratio } from './stats.js';

export interface Row {
  figure: string;
  app: string;
  baseline: string;
  /** The figure's ratio (app over baseline), as a number for the chart. */
  ratio: number | undefined;
  target: string;
}

const rate = (v: number) => `${v.toFixed(1)}/s`;
const ms = (v: number | undefined) => `${formatMs(v)} ms`;

export function flowRows(r: FlowBenchResults): Row[] {
  const rows: Row[] = [];
  for (const e of r.endToEnd) {
    rows.push(
      {
        figure: `End to end, ${e.workers} worker${e.workers > 1 ? 's' : ''}: purchases/s`,
        app: rate(e.app.perSecond),
        baseline: rate(e.baseline.perSecond),
        ratio: e.rate,
        target: '≥ 0.85×',
      },
      {
        figure: `End to end, ${e.workers} worker${e.workers > 1 ? 's' : ''}: p50 / p99 latency`,
        app: `${ms(e.app.p50)} / ${ms(e.app.p99)}`,
        baseline: `${ms(e.baseline.p50)} / ${ms(e.baseline.p99)}`,
        ratio: e.p99,
        target: 'p99 ratio',
      },
    );
  }
  if (r.startToDebit) {
    const s = r.startToDebit;
    rows.push({
      figure: 'End to end, 1 worker: call → debit settled, p50 / p99',
      app: `${ms(s.app.p50)} / ${ms(s.app.p99)}`,
      baseline: `${ms(s.baseline.p50)} / ${ms(s.baseline.p99)}`,
      ratio: s.p50,
      target: 'p50 ratio',
    });
  }
  if (r.history) {
    const { app, baseline } = r.history;
    rows.push({
      figure: 'End to end: history events / workflow tasks per purchase',
      app: `${app.events} / ${app.workflowTasks}`,
      baseline: `${baseline.events} / ${baseline.workflowTasks}`,
      ratio: ratio(app.workflowTasks, baseline.workflowTasks),
      target: 'workflow tasks ratio',
    });
  }
  const h = r.hotWallet;
  if (h) {
    rows.push({
      figure: `Hot wallet: ${h.debits} debits on 1 wallet covering ${h.covered} (elapsed)`,
      app: `${h.hot.elapsedMs.toFixed(0)} ms, ${h.hot.succeeded} ok, ${h.hot.refused} refused, balance ${h.hot.balanceAfter}`,
      baseline: `${h.spread.elapsedMs.toFixed(0)} ms over ${h.debits} wallets`,
      ratio: h.elapsed,
      target: h.exact && !h.overdraft ? `exactly ${h.covered} ok, no overdraft ✓` : 'NOT EXACT ✗',
    });
  }
  for (const w of r.webhook) {
    rows.push({
      figure: `Webhook to credited at ${w.eventsPerSecond}/s: p99 (${w.events} events)`,
      app: `${ms(w.app.p99)} (p50 ${ms(w.app.p50)}; closed p99 ${ms(w.closed.app.p99)})`,
      baseline: `${ms(w.baseline.p99)} (p50 ${ms(w.baseline.p50)}; closed p99 ${ms(w.closed.baseline.p99)})`,
      ratio: w.p99,
      target: '< 300 ms',
    });
  }
  for (const t of r.timeoutRefund) {
    rows.push({
      figure: `Timeout to refund, ${t.concurrency} concurrent: p99 past the ${t.timeoutSeconds} s timeout`,
      app: `${ms(t.app.p99)} (p50 ${ms(t.app.p50)}; timer ${ms(t.timerLate.app.p99)} late)`,
      baseline: `${ms(t.baseline.p99)} (p50 ${ms(t.baseline.p50)}; timer ${ms(t.timerLate.baseline.p99)} late)`,
      ratio: t.p99,
      target: '< 1 s',
    });
  }
  for (const g of r.growth) {
    rows.push({
      figure: `Growth: end to end with ${g.wallets.toLocaleString('en')} wallets (${g.workers} workers)`,
      app: rate(g.app.perSecond),
      baseline: rate(g.baseline.perSecond),
      ratio: g.rate,
      target: '',
    });
  }
  if (r.growth.length > 1) {
    const first = r.growth[0]!;
    const last = r.growth[r.growth.length - 1]!;
    rows.push({
      figure: `Growth: rate at ${last.wallets.toLocaleString('en')} / at ${first.wallets.toLocaleString('en')} wallets`,
      app: rate(last.app.perSecond),
      baseline: rate(first.app.perSecond),
      ratio: r.growthRate,
      target: '≈ 1.0×',
    });
  }
  return rows;
}

/** CPU ms per purchase by part, creditflow next to the baseline (first end-to-end run). */
export function cpuRows(r: FlowBenchResults): string[][] {
  const run = r.endToEnd.find((e) => e.cpuMsPerPurchase);
  if (!run?.cpuMsPerPurchase) return [];
  const { app, baseline } = run.cpuMsPerPurchase;
  const parts = ['temporal', 'workers', 'baseline worker', 'api', 'postgresql', 'driver'];
  const total = (x: Record<string, number>) => Object.values(x).reduce((a, b) => a + b, 0);
  return [
    ...parts.map((p) => [p, (app[p] ?? 0).toFixed(1), (baseline[p] ?? 0).toFixed(1)]),
    ['total', total(app).toFixed(1), total(baseline).toFixed(1)],
  ];
}

export function flowErrors(r: FlowBenchResults): string[] {
  const lines: string[] = [];
  const add = (what: string, s: { errors: number; firstError?: string | undefined }) => {
    if (s.errors > 0) lines.push(`${what}: ${s.errors} failed, first: ${s.firstError ?? '?'}`);
  };
  for (const e of r.endToEnd) {
    add(`end to end (${e.workers}) app`, e.app);
    add(`end to end (${e.workers}) baseline`, e.baseline);
  }
  for (const w of r.webhook) {
    add(`webhook ${w.eventsPerSecond}/s app`, w.closed.app);
    add(`webhook ${w.eventsPerSecond}/s baseline`, w.closed.baseline);
    add(`webhook ${w.eventsPerSecond}/s app history`, w.app);
    add(`webhook ${w.eventsPerSecond}/s baseline history`, w.baseline);
  }
  for (const t of r.timeoutRefund) {
    add(`timeout ${t.concurrency} app`, t.app);
    add(`timeout ${t.concurrency} baseline`, t.baseline);
  }
  for (const g of r.growth) add(`growth ${g.wallets} app`, g.app);
  const h = r.hotWallet;
  if (h && (h.hot.errors || h.spread.errors)) {
    lines.push(
      `hot wallet: ${h.hot.errors + h.spread.errors} unexpected answers: ` +
        [...h.hot.unexpected, ...h.spread.unexpected].join('; '),
    );
  }
  return lines;
}

function markdownTable(r: FlowBenchResults): string {
  const rows = flowRows(r);
  const lines = [
    '| figure | creditflow | baseline | ratio | target |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(
      (x) => `| ${x.figure} | ${x.app} | ${x.baseline} | ${formatRatio(x.ratio)} | ${x.target} |`,
    ),
  ];
  const cpu = cpuRows(r);
  const cpuTable = cpu.length
    ? `\n\nCPU milliseconds per purchase by process, end to end with 1 worker:\n\n| process | creditflow | baseline |\n| --- | --- | --- |\n${cpu.map((c) => `| ${c.join(' | ')} |`).join('\n')}`
    : '';
  return `${lines.join('\n')}${cpuTable}\n\nMeasured ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC on ${r.cpus} CPUs (shared with other work), ${r.options.clients} clients, ${r.options.seconds} s per closed-loop run, in ${r.seconds.toFixed(0)} s. Ratios are creditflow over a baseline measured in the same run on the same Temporal dev server and worker settings (bare workflows with as many no-op activities; for the hot wallet, the same debits spread over as many wallets).`;
}

export function printFlowTable(r: FlowBenchResults): void {
  const rows = flowRows(r);
  const header = ['figure', 'creditflow', 'baseline', 'ratio', 'target'];
  const cells = rows.map((x) => [x.figure, x.app, x.baseline, formatRatio(x.ratio), x.target]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i]!)).join('  ');
  console.log(`\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const c of cells) console.log(line(c));
  const cpu = cpuRows(r);
  if (cpu.length) {
    console.log('\nCPU ms per purchase (end to end, 1 worker): process  creditflow  baseline');
    for (const c of cpu)
      console.log(`  ${c[0]!.padEnd(16)} ${c[1]!.padStart(8)} ${c[2]!.padStart(9)}`);
  }
  for (const e of flowErrors(r)) console.log(e);
  console.log(`\n(${r.seconds.toFixed(0)} s)`);
}

const escapeXml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A horizontal bar per ratio, with the 1.0× line marked. */
export function flowChart(r: FlowBenchResults): string {
  const rows = flowRows(r).filter((x) => x.ratio !== undefined);
  const labelWidth = 470;
  const barWidth = 360;
  const rowHeight = 24;
  const top = 40;
  const max = Math.max(2, ...rows.map((x) => x.ratio!));
  const scale = barWidth / max;
  const height = top + rows.length * rowHeight + 30;
  const width = labelWidth + barWidth + 80;
  const bars = rows
    .map((x, i) => {
      const y = top + i * rowHeight;
      const w = Math.max(1, x.ratio! * scale);
      return [
        `<text x="${labelWidth - 8}" y="${y + 15}" text-anchor="end">${escapeXml(x.figure)}</text>`,
        `<rect x="${labelWidth}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowHeight - 8}" fill="#4c78a8"/>`,
        `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 15}">${formatRatio(x.ratio)}</text>`,
      ].join('');
    })
    .join('\n');
  const one = labelWidth + scale;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">creditflow flow benchmarks: ratio to the baseline (${escapeXml(r.startedAt.slice(0, 10))})</text>
${bars}
<line x1="${one}" y1="${top}" x2="${one}" y2="${height - 24}" stroke="#d62728" stroke-dasharray="4 3"/>
<text x="${one}" y="${height - 10}" text-anchor="middle" fill="#d62728">1.0×</text>
</svg>
`;
}

const START = '<!-- flow-bench:start -->';
const END = '<!-- flow-bench:end -->';

/** The README is under format:check: write it the way prettier would. */
async function formatted(file: string, text: string): Promise<string> {
  const prettier = await import('prettier');
  const config = (await prettier.resolveConfig(file)) ?? {};
  return prettier.format(text, { ...config, filepath: file });
}

export async function writeFlowReports(
  r: FlowBenchResults,
  where: { resultsDir: string | undefined; readme: string | undefined },
): Promise<void> {
  const table = markdownTable(r);
  if (where.resultsDir) {
    mkdirSync(where.resultsDir, { recursive: true });
    writeFileSync(join(where.resultsDir, 'flows.json'), `${JSON.stringify(r, null, 2)}\n`);
    const errors = flowErrors(r);
    writeFileSync(
      join(where.resultsDir, 'flows.md'),
      `# Flow benchmarks\n\n${table}\n${errors.length ? `\n${errors.map((e) => `- ${e}`).join('\n')}\n` : ''}\n![ratios](flows.svg)\n`,
    );
    writeFileSync(join(where.resultsDir, 'flows.svg'), flowChart(r));
  }
  if (where.readme) {
    const text = readFileSync(where.readme, 'utf8');
    const start = text.indexOf(START);
    const end = text.indexOf(END);
    if (start >= 0 && end > start) {
      const updated = `${text.slice(0, start + START.length)}\n\n${table}\n\n${text.slice(end)}`;
      writeFileSync(where.readme, await formatted(where.readme, updated));
    }
  }
}
