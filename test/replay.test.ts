// Every recorded history under test/histories must replay against today's workflow code, so a
// change that would break running workflows fails here first (use patched() to evolve them).
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { inject } from 'vitest';

const dir = fileURLToPath(new URL('./histories/', import.meta.url));
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

describe('replay of recorded histories', () => {
  it('has histories to replay', () => {
    expect(files.length).toBeGreaterThanOrEqual(14);
  });

  it.each(files)('%s replays without nondeterminism', async (file) => {
    const { workflowId, history } = JSON.parse(readFileSync(`${dir}${file}`, 'utf8')) as {
      workflowId: string;
      history: unknown;
    };
    await expect(
      Worker.runReplayHistory(
        { workflowBundle: { codePath: inject('workflowBundlePath') } },
        temporal.api.history.v1.History.fromObject(history as Record<string, unknown>),
        workflowId,
      ),
    ).resolves.toBeUndefined();
  });
});
