import { describe, expect, it } from 'vitest';
import { formatMs, formatRatio, percentile, ratio, summarise } from '../../bench/flows/stats.js';

describe('flow benchmark statistics', () => {
  it('takes the nearest-rank percentile of a sorted sample', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 0.5)).toBe(50);
    expect(percentile(sorted, 0.99)).toBe(99);
    expect(percentile(sorted, 1)).toBe(100);
    expect(percentile(sorted, 0)).toBe(1);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeUndefined();
    expect(() => percentile(sorted, 1.5)).toThrow(RangeError);
  });

  it('summarises unsorted latencies into rate and percentiles', () => {
    const latencies = [30, 10, 20, 50, 40];
    const s = summarise(latencies, 2, 2);
    expect(s).toMatchObject({ completed: 5, errors: 2, seconds: 2, perSecond: 2.5 });
    expect(s.p50).toBe(30);
    expect(s.p99).toBe(50);
    expect(s.max).toBe(50);
    expect(latencies).toEqual([30, 10, 20, 50, 40]);
    expect(summarise([], 0, 1)).toMatchObject({ completed: 0, perSecond: 0, p50: undefined });
  });

  it('reports a ratio only when both sides are measured and the baseline is not zero', () => {
    expect(ratio(17, 20)).toBeCloseTo(0.85);
    expect(ratio(5, 0)).toBeUndefined();
    expect(ratio(undefined, 3)).toBeUndefined();
    expect(ratio(3, undefined)).toBeUndefined();
    expect(ratio(Number.NaN, 3)).toBeUndefined();
    expect(formatRatio(0.8512)).toBe('0.85×');
    expect(formatRatio(undefined)).toBe('—');
    expect(formatMs(1234.56)).toBe('1235');
    expect(formatMs(12.345)).toBe('12.3');
  });
});
