// How a test keeps the history of a named run when histories are being recorded
// (`npm run histories:record`, which sets RECORD_HISTORIES=1).
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { existsSync, writeFileSync } from 'node:fs';
import { processEnv } from '../src/config.js';
import {
  historiesDir,
  historyFiles,
  patchIdsIn,
  readHistory,
  type RecordedHistory,
} from './history-files.js';

export const recordingHistories = () => processEnv().RECORD_HISTORIES === '1';

/**
 * Keeps the history of a closed run as test/histories/<name>.json when histories are being
 * recorded; otherwise does nothing. An existing file is never overwritten (it stands for the
 * workflows already running in production): a run whose history takes a patch that no recorded
 * history has yet is kept beside it as <name>--<patch-id>.json.
 */
export async function keepHistory(
  client: Client,
  name: string,
  workflowId: string,
  runId?: string,
): Promise<string | undefined> {
  if (!recordingHistories()) return undefined;
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`history name ${name}: use a-z, 0-9, -`);
  const handle = client.workflow.getHandle(workflowId, runId);
  const { status } = await handle.describe();
  if (status.name === 'RUNNING') throw new Error(`${workflowId} is still running; wait for it`);
  const history = temporal.api.history.v1.History.toObject(
    temporal.api.history.v1.History.fromObject(await handle.fetchHistory()),
    { longs: String, enums: String, bytes: String },
  );
  const recorded: RecordedHistory = { workflowId, history };

  let file = `${name}.json`;
  if (existsSync(`${historiesDir}${file}`)) {
    const covered = new Set(historyFiles().flatMap((f) => patchIdsIn(readHistory(f))));
    const fresh = patchIdsIn(recorded).filter((id) => !covered.has(id));
    if (fresh.length === 0) return undefined;
    file = `${name}--${fresh.sort().join('--')}.json`;
  }
  writeFileSync(`${historiesDir}${file}`, `${JSON.stringify(recorded, null, 1)}\n`);
  return file;
}
