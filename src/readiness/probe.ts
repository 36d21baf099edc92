// The API's readiness: both services answer, the Temporal namespace and search attributes exist,
// and the database is migrated as far as this build. A passing Temporal setup check is kept for a
// few seconds, so a load balancer polling /readyz costs one cheap RPC and one query.
import type { Client } from '@temporalio/client';
import type { Sql } from 'postgres';
import type { Logger } from '../logger.js';
import { migrationProblems, temporalSetupProblems, type SetupProblem } from './checks.js';

export type CheckState = 'ok' | 'missing' | 'unreachable' | 'unknown';

export interface Readiness {
  ready: boolean;
  checks: {
    database: CheckState;
    temporal: CheckState;
    namespace: CheckState;
    searchAttributes: CheckState;
    migrations: CheckState;
  };
  /** Each missing piece and the command that adds it. */
  problems: SetupProblem[];
}

export interface ReadinessProbeOptions {
  sql: Sql;
  temporal: Client;
  logger: Logger;
  /** How long a passing namespace and search-attribute check is reused. */
  setupCacheMs?: number;
  /** Deadline of each Temporal call. */
  deadlineMs?: number;
}

export const DEFAULT_SETUP_CACHE_MS = 10_000;

export function createReadinessProbe(options: ReadinessProbeOptions): () => Promise<Readiness> {
  const { sql, temporal, logger } = options;
  const cacheMs = options.setupCacheMs ?? DEFAULT_SETUP_CACHE_MS;
  const deadlineMs = options.deadlineMs ?? 2_000;
  let setupPassedAt: number | undefined;

  const database = async (): Promise<{ state: CheckState; problems: SetupProblem[] }> => {
    try {
      return { state: 'ok', problems: await migrationProblems(sql) };
    } catch (err) {
      logger.warn({ err, dependency: 'database' }, 'readiness check failed');
      return { state: 'unreachable', problems: [] };
    }
  };

  const temporalSetup = async (): Promise<{ state: CheckState; problems: SetupProblem[] }> => {
    const connection = temporal.connection;
    try {
      if (setupPassedAt !== undefined && Date.now() - setupPassedAt < cacheMs) {
        // The setup was fine a moment ago; only ask whether the server still answers.
        await connection.withDeadline(Date.now() + deadlineMs, () =>
          connection.workflowService.getSystemInfo({}),
        );
        return { state: 'ok', problems: [] };
      }
      const problems = await temporalSetupProblems(
        connection,
        temporal.options.namespace,
        deadlineMs,
      );
      setupPassedAt = problems.length === 0 ? Date.now() : undefined;
      return { state: 'ok', problems };
    } catch (err) {
      setupPassedAt = undefined;
      logger.warn({ err, dependency: 'temporal' }, 'readiness check failed');
      return { state: 'unreachable', problems: [] };
    }
  };

  return async () => {
    const [db, tp] = await Promise.all([database(), temporalSetup()]);
    const problems = [...tp.problems, ...db.problems];
    const stateOf = (reachable: CheckState, check: SetupProblem['check']): CheckState =>
      reachable !== 'ok' ? 'unknown' : problems.some((p) => p.check === check) ? 'missing' : 'ok';
    const namespace = stateOf(tp.state, 'namespace');
    const checks = {
      database: db.state,
      temporal: tp.state,
      namespace,
      // Search attributes live in a namespace: unknown while it is missing.
      searchAttributes:
        namespace === 'missing' ? 'unknown' : stateOf(tp.state, 'search_attributes'),
      migrations: stateOf(db.state, 'migrations'),
    } satisfies Readiness['checks'];
    if (problems.length > 0) logger.warn({ problems }, 'not ready: setup incomplete');
    return {
      ready: Object.values(checks).every((state) => state === 'ok'),
      checks,
      problems,
    };
  };
}
