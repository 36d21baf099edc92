// What a cluster and a database must have before creditflow can run on them: the namespace, the
// search attributes the workflows set, and the migrations this build ships. The API's /readyz and
// the worker's start both ask here, so they name the same missing piece and the same fix.
import { Connection, isGrpcServiceError, type ConnectionLike } from '@temporalio/client';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { migrationsFolder } from '../db/client.js';
import { SEARCH_ATTRIBUTE_REGISTRATION } from '../shared.js';

/** One missing piece, and the command an operator runs to add it. */
export interface SetupProblem {
  check: 'namespace' | 'search_attributes' | 'migrations';
  message: string;
  fix: string;
}

const GRPC_NOT_FOUND = 5;
const GRPC_PERMISSION_DENIED = 7;

/** Indexed value types as the operator service reports them (temporal.api.enums.v1). */
export const INDEXED_VALUE_TYPES: Record<string, number> = {
  Text: 1,
  Keyword: 2,
  Int: 3,
  Double: 4,
  Bool: 5,
  Datetime: 6,
  KeywordList: 7,
};

/** The server a connection talks to, for the fix commands (`--address`). */
export function addressOf(connection: ConnectionLike): string {
  return connection instanceof Connection ? connection.options.address : '<host:port>';
}

/** The migration command in package.json. */
export const MIGRATE_COMMAND = 'npm run db:migrate';

/**
 * The namespace exists and holds every search attribute the workflows set, with its type. A
 * missing namespace stops there: search attributes belong to a namespace. Unreachable Temporal
 * throws (the caller reports that as "unreachable").
 */
export async function temporalSetupProblems(
  connection: ConnectionLike,
  namespace: string,
  deadlineMs = 2_000,
): Promise<SetupProblem[]> {
  const address = addressOf(connection);
  const withDeadline = <T>(call: () => Promise<T>) =>
    connection.withDeadline(Date.now() + deadlineMs, call);
  try {
    await withDeadline(() => connection.workflowService.describeNamespace({ namespace }));
  } catch (err) {
    if (isGrpcServiceError(err) && Number(err.code) === GRPC_NOT_FOUND) {
      return [
        {
          check: 'namespace',
          message: `Temporal namespace "${namespace}" does not exist on ${address}`,
          fix: `temporal operator namespace create -n ${namespace} --address ${address}`,
        },
      ];
    }
    throw err;
  }
  let present: Record<string, number>;
  try {
    const listed = await withDeadline(() =>
      connection.operatorService.listSearchAttributes({ namespace }),
    );
    present = Object.fromEntries(
      Object.entries(listed.customAttributes ?? {}).map(([name, type]) => [name, Number(type)]),
    );
  } catch (err) {
    // Temporal Cloud keeps the operator service to its own API; an API key there cannot list them.
    if (isGrpcServiceError(err) && Number(err.code) === GRPC_PERMISSION_DENIED) return [];
    throw err;
  }
  return Object.entries(SEARCH_ATTRIBUTE_REGISTRATION)
    .filter(([name, type]) => present[name] !== INDEXED_VALUE_TYPES[type])
    .map(([name, type]) => ({
      check: 'search_attributes' as const,
      message:
        present[name] === undefined
          ? `search attribute ${name} (${type}) is missing in namespace "${namespace}"`
          : `search attribute ${name} in namespace "${namespace}" is not of type ${type}`,
      fix: `temporal operator search-attribute create --name ${name} --type ${type} --namespace ${namespace} --address ${address}`,
    }));
}

interface JournalEntry {
  tag: string;
  when: number;
}

/** The migrations this build ships (drizzle/meta/_journal.json), oldest first. */
export function shippedMigrations(folder = migrationsFolder): JournalEntry[] {
  const journal = JSON.parse(readFileSync(join(folder, 'meta', '_journal.json'), 'utf8')) as {
    entries: JournalEntry[];
  };
  return journal.entries;
}

/**
 * The database is migrated at least as far as this build: drizzle applies every journal entry
 * newer than the newest row of drizzle.__drizzle_migrations, so that row tells the level.
 * A newer database (the next build migrated it) is fine.
 */
export async function migrationProblems(
  sql: Sql,
  shipped: JournalEntry[] = shippedMigrations(),
): Promise<SetupProblem[]> {
  let applied: number | null;
  try {
    const [row] = await sql<{ level: string | null }[]>`
      select max(created_at)::text as level from drizzle.__drizzle_migrations`;
    applied = row?.level ? Number(row.level) : null;
  } catch (err) {
    const code = (err as { code?: string }).code;
    // No migrations table: nothing was ever applied. No right to read it: the migration that
    // grants it (0009) has not run. Either way the database is behind this build.
    if (code !== '42P01' && code !== '3F000' && code !== '42501') throw err;
    applied = null;
  }
  const pending = shipped.filter((entry) => applied === null || entry.when > applied);
  if (pending.length === 0) return [];
  return [
    {
      check: 'migrations',
      message: `the database lacks ${pending.length} of this build's ${shipped.length} migrations (next: ${pending[0]!.tag})`,
      fix: `${MIGRATE_COMMAND} (as the schema owner: MIGRATION_DATABASE_URL)`,
    },
  ];
}

/** "what is missing (fix: command)" for a log line, an error or a response. */
export function describeProblem(problem: SetupProblem): string {
  return `${problem.message}; fix: ${problem.fix}`;
}

/**
 * A process that must not start, for a reason an operator fixes outside it: the entry prints
 * the message alone (no stack) and exits non-zero.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }

  /** One line naming every missing piece and its fix. */
  static fromProblems(what: string, problems: SetupProblem[]): StartupError {
    return new StartupError(`${what} cannot start: ${problems.map(describeProblem).join(' | ')}`);
  }
}
