// The recorded workflow histories under test/histories, and the patches they and the workflow code
// name. Plain Node: used by the replay test and by scripts/record-histories.ts.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const historiesDir = fileURLToPath(new URL('./histories/', import.meta.url));
const workflowsDir = fileURLToPath(new URL('../src/workflows/', import.meta.url));

export interface RecordedHistory {
  workflowId: string;
  history: { events?: Array<Record<string, unknown>> };
}

export function historyFiles(): string[] {
  return readdirSync(historiesDir)
    .filter((f) => f.endsWith('.json'))
    .sort();
}

export function readHistory(file: string): RecordedHistory {
  return JSON.parse(readFileSync(`${historiesDir}${file}`, 'utf8')) as RecordedHistory;
}

/** The patch ids whose markers a history holds (what `patched(id)` recorded when it ran). */
export function patchIdsIn(recorded: RecordedHistory): string[] {
  const ids = new Set<string>();
  for (const event of recorded.history.events ?? []) {
    if (event.eventType !== 'EVENT_TYPE_MARKER_RECORDED') continue;
    const marker = event.markerRecordedEventAttributes as
      | { markerName?: string; details?: Record<string, { payloads?: { data?: string }[] }> }
      | undefined;
    if (marker?.markerName !== 'core_patch') continue;
    for (const payload of marker.details?.['patch-data']?.payloads ?? []) {
      if (!payload.data) continue;
      const data = JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8')) as {
        id?: string;
      };
      if (data.id) ids.add(data.id);
    }
  }
  return [...ids];
}

/** Every id passed to `patched()` or `deprecatePatch()` in src/workflows, with its file. */
export function patchIdsInWorkflows(): Array<{ id: string; file: string }> {
  const found: Array<{ id: string; file: string }> = [];
  for (const file of readdirSync(workflowsDir).filter((f) => f.endsWith('.ts'))) {
    const source = readFileSync(`${workflowsDir}${file}`, 'utf8');
    for (const match of source.matchAll(/\b(?:patched|deprecatePatch)\(\s*(['"`])([^'"`]+)\1/g)) {
      found.push({ id: match[2]!, file });
    }
  }
  return found;
}
