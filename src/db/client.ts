// Database handle: one postgres.js pool, with drizzle on top for typed queries.
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import { join } from 'node:path';
import postgres from 'postgres';
import { projectRoot } from '../paths.js';
import * as schema from './schema.js';

export type Sql = postgres.Sql;
export type Drizzle = PostgresJsDatabase<typeof schema>;

export interface Database {
  sql: Sql;
  db: Drizzle;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  max?: number;
  /** Name shown in pg_stat_activity, so an operator can tell API, worker and tests apart. */
  applicationName?: string;
  /** statement_timeout for every connection (the worker keeps it below its activity timeouts). */
  statementTimeoutMs?: number;
}

/** Opens a pool; nothing connects until the first query. */
export function createDatabase(url: string, options: DatabaseOptions = {}): Database {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => undefined,
    connection: {
      application_name: options.applicationName ?? 'creditflow',
      ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    },
  });
  const db = drizzle(sql, { schema });
  return {
    sql,
    db,
    close: () => sql.end({ timeout: 5 }),
  };
}

/** drizzle/ at the project root: beside src/ in a checkout, beside dist/ in the image. */
export const migrationsFolder = join(projectRoot, 'drizzle');

/** Applies every pending migration in drizzle/ (idempotent; safe to run at every start). */
export async function runMigrations(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  try {
    await migrate(drizzle(sql), { migrationsFolder });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * drizzle's postgres-js driver makes the shared pool return timestamps as text; raw queries
 * on the same pool pass them through here to get a Date either way.
 */
export function toDate(value: Date | string): Date {
  return value instanceof Date ? value : new Date(value);
}
