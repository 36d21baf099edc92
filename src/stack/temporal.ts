// The local Temporal dev server: the CLI found or built (DESIGN.md "Local stack"), or the SDK's download.
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { searchAttributes } from '../shared.js';
import { devServerDynamicConfigArgs } from './temporal-server.js';
import { TEMPORAL_CLI, ensureTool, type Log } from './tools.js';

export interface DevServerOptions {
  /** SQLite file that keeps workflows across restarts; in-memory when absent (tests). */
  dbFilename?: string;
  port?: number;
  /** Web UI port; the UI is off when absent. */
  uiPort?: number;
  namespace?: string;
  env: Record<string, string | undefined>;
  log: Log;
}

export interface RunningTemporal {
  address: string;
  namespace: string;
  uiUrl: string | undefined;
  stop: () => Promise<void>;
}

export async function startTemporalDevServer(options: DevServerOptions): Promise<RunningTemporal> {
  const cli = await ensureTool(TEMPORAL_CLI, options.env, options.log);
  if (!cli) {
    options.log(
      'Go is not installed, so the Temporal CLI cannot be built here; trying the Temporal SDK download ' +
        '(needs internet). To avoid this, install Go or set TEMPORAL_CLI_PATH to a temporal binary.',
    );
  }
  const namespace = options.namespace ?? 'default';
  let env: TestWorkflowEnvironment;
  try {
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: cli ? { type: 'existing-path', path: cli } : { type: 'cached-download' },
        ip: '127.0.0.1',
        namespace,
        ...(options.port ? { port: options.port } : {}),
        ...(options.dbFilename ? { dbFilename: options.dbFilename } : {}),
        ...(options.uiPort ? { ui: true, uiPort: options.uiPort } : { ui: false }),
        searchAttributes: Object.values(searchAttributes),
        log: { format: 'pretty', level: 'error' },
        extraArgs: devServerDynamicConfigArgs(),
      },
    });
  } catch (err) {
    throw new Error(
      `Could not start the Temporal dev server (${(err as Error).message}). ` +
        'Install Go (the CLI is then built once with go install ' +
        `${TEMPORAL_CLI.goPackage}), set TEMPORAL_CLI_PATH, or point TEMPORAL_ADDRESS at a running server.`,
      { cause: err },
    );
  }
  return {
    address: env.address,
    namespace,
    uiUrl: options.uiPort ? `http://127.0.0.1:${options.uiPort}` : undefined,
    stop: () => env.teardown(),
  };
}
