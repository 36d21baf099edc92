// The reconciliation window, its chunks and the API's window checks (pure code).
import { describe, expect, it } from 'vitest';
import {
  CHUNK_MS,
  DAILY_LOOKBACK_MS,
  MAX_WINDOW_MS,
  SWEEP_MARGIN_MS,
  chunksOf,
  resolveWindow,
  runIdFromWorkflowId,
  windowProblem,
} from '../../src/reconciliation/plan.js';

const at = new Date('2026-11-27T02:00:00Z');

describe('reconciliation window', () => {
  it('daily: the previous day plus the lookback, ending at the action time', () => {
    const w = resolveWindow({ trigger: 'schedule', windowMinutes: 1440 }, at);
    expect(w.to).toEqual(at);
    expect(at.getTime() - w.from.getTime()).toBe(24 * 3600_000 + DAILY_LOOKBACK_MS);
  });

  it('sweep: its interval plus a margin', () => {
    const w = resolveWindow({ trigger: 'sweep', windowMinutes: 15 }, at);
    expect(at.getTime() - w.from.getTime()).toBe(15 * 60_000 + SWEEP_MARGIN_MS);
  });

  it('manual: exactly the window asked for', () => {
    const w = resolveWindow(
      { trigger: 'manual', from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z' },
      at,
    );
    expect(w).toEqual({
      from: new Date('2026-11-01T00:00:00Z'),
      to: new Date('2026-11-02T00:00:00Z'),
    });
  });

  it('cuts a window into chunks that cover it without gaps', () => {
    const from = new Date('2026-11-01T00:00:00Z');
    const to = new Date(from.getTime() + 2.5 * CHUNK_MS);
    const chunks = chunksOf({ from, to });
    expect(chunks).toHaveLength(3);
    expect(chunks[0]!.from).toBe(from.toISOString());
    expect(chunks.at(-1)!.to).toBe(to.toISOString());
    for (let i = 1; i < chunks.length; i++) expect(chunks[i]!.from).toBe(chunks[i - 1]!.to);
  });

  it('refuses empty, reversed, too long and unparseable windows', () => {
    const from = new Date('2026-11-01T00:00:00Z');
    expect(windowProblem(from, from)).toMatch(/before/);
    expect(windowProblem(from, new Date(from.getTime() - 1))).toMatch(/before/);
    expect(windowProblem(from, new Date(from.getTime() + MAX_WINDOW_MS + 1))).toMatch(/at most/);
    expect(windowProblem(new Date('x'), from)).toMatch(/ISO 8601/);
    expect(windowProblem(from, new Date(from.getTime() + MAX_WINDOW_MS))).toBeNull();
  });

  it('takes the run id from the workflow id a schedule names', () => {
    expect(runIdFromWorkflowId('reconciliation-sweep-2026-11-27T02:00:00Z')).toBe(
      'sweep-2026-11-27T02:00:00Z',
    );
  });
});
