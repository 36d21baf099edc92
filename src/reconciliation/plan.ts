// The shape of a reconciliation run: its window, the chunks it is cut into, and the limits that
// keep one workflow history bounded. Pure, so the workflow, the API and unit tests share it.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** The daily run looks back one day plus this, so nothing near midnight falls between two runs. */
export const DAILY_LOOKBACK_MS = 2 * HOUR;
/** The sweep's window reaches this far further back than its interval, for late writes. */
export const SWEEP_MARGIN_MS = 5 * MINUTE;
/** A manual window may not be longer than this. */
export const MAX_WINDOW_MS = 31 * 24 * HOUR;
/** One chunk of the window: listed and compared by one set of activities. */
export const CHUNK_MS = 6 * HOUR;
/** Chunks one workflow run handles before it continues as new (bounded history). */
export const CHUNKS_PER_RUN = 8;
/** The external id of the customer the sweep's canary purchases are made for. */
export const CANARY_EXTERNAL_ID = 'creditflow-canary';
/** The canary's verification times out after this, and must be refunded within the deadline. */
export const CANARY_TIMEOUT_SECONDS = 2;
export const CANARY_DEADLINE_MS = 60_000;

export interface ReconciliationWindow {
  from: Date;
  to: Date;
}

/** Why a window cannot be reconciled, for the API's 400; null when it is fine. */
export function windowProblem(from: Date, to: Date): string | null {
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) {
    return 'from and to must be ISO 8601 instants, e.g. 2026-11-27T00:00:00Z';
  }
  if (from.getTime() >= to.getTime()) return 'from must be before to';
  if (to.getTime() - from.getTime() > MAX_WINDOW_MS) {
    return `the window may be at most ${MAX_WINDOW_MS / (24 * HOUR)} days; split it into several runs`;
  }
  return null;
}

/**
 * The window a run covers: the one it was given, else the schedule's. `now` is the schedule's
 * action time (or the workflow's start), so a retried or replayed run covers the same window.
 */
export function resolveWindow(
  input: {
    trigger: 'schedule' | 'sweep' | 'manual';
    from?: string | null;
    to?: string | null;
    windowMinutes?: number | null;
  },
  now: Date,
): ReconciliationWindow {
  const to = input.to ? new Date(input.to) : now;
  if (input.from) return { from: new Date(input.from), to };
  const span =
    input.trigger === 'sweep'
      ? (input.windowMinutes ?? 15) * MINUTE + SWEEP_MARGIN_MS
      : (input.windowMinutes ?? 24 * 60) * MINUTE + DAILY_LOOKBACK_MS;
  return { from: new Date(to.getTime() - span), to };
}

/** The window cut into chunks of CHUNK_MS, oldest first. */
export function chunksOf(window: ReconciliationWindow): Array<{ from: string; to: string }> {
  const chunks: Array<{ from: string; to: string }> = [];
  for (let at = window.from.getTime(); at < window.to.getTime(); at += CHUNK_MS) {
    const end = Math.min(at + CHUNK_MS, window.to.getTime());
    chunks.push({ from: new Date(at).toISOString(), to: new Date(end).toISOString() });
  }
  return chunks;
}

/** A run id from a workflow id: `reconciliation-<run id>` (a schedule appends its action time). */
export function runIdFromWorkflowId(workflowId: string): string {
  return workflowId.replace(/^reconciliation-/, '');
}
