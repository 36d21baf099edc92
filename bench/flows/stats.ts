// Pure statistics for the flow benchmarks: percentiles, rates and ratios to a baseline.

/** Nearest-rank percentile (p in 0..1) of an ascending array; undefined when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  if (!(p >= 0 && p <= 1)) throw new RangeError(`percentile: p must be within 0..1 (got ${p})`);
  const rank = Math.ceil(p * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Summary {
  /** Operations that finished (their latencies are the sample). */
  completed: number;
  errors: number;
  seconds: number;
  perSecond: number;
  /** Milliseconds; undefined when nothing completed. */
  p50: number | undefined;
  p99: number | undefined;
  max: number | undefined;
}

/** Count, rate and latency percentiles of one measured run. */
export function summarise(latenciesMs: number[], errors: number, seconds: number): Summary {
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    completed: sorted.length,
    errors,
    seconds,
    perSecond: seconds > 0 ? sorted.length / seconds : 0,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length > 0 ? sorted[sorted.length - 1] : undefined,
  };
}

/**
 * value / baseline, or undefined when either is missing or the baseline is zero: a ratio that
 * cannot be computed is reported as such rather than as 0 or Infinity.
 */
export function ratio(value: number | undefined, baseline: number | undefined): number | undefined {
  if (value === undefined || baseline === undefined) return undefined;
  if (!Number.isFinite(value) || !Number.isFinite(baseline) || baseline === 0) return undefined;
  return value / baseline;
}

/** `0.87×`, or `—` for a ratio that could not be computed. */
export function formatRatio(value: number | undefined, digits = 2): string {
  return value === undefined ? '—' : `${value.toFixed(digits)}×`;
}

/** Milliseconds with a precision that suits their size, or `—`. */
export function formatMs(value: number | undefined): string {
  if (value === undefined) return '—';
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}
