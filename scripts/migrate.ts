// `npm run db:migrate`: applies drizzle/ migrations as the schema owner: MIGRATION_DATABASE_URL,
// else DATABASE_URL (or the running local stack's).
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';
import { runMigrations } from '../src/db/client.js';

loadLocalStackEnv();
const config = loadConfigOrExit();
const url = required(
  config.migrationDatabaseUrl,
  'MIGRATION_DATABASE_URL',
  '(or DATABASE_URL) to know which database to migrate, as its owner',
);
await runMigrations(url);
console.log('Migrations applied.');
