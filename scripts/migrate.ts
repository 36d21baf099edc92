// `npm run db:migrate`: applies drizzle/ migrations as the schema owner: MIGRATION_DATABASE_URL,
// else DATABASE_URL (or the running local stack's).
//
//   npm run db:migrate -- --app-login   also creates (or updates) DATABASE_URL's user as a login
//                                       role in creditflow_app, with DATABASE_URL's password
import { parseArgs } from 'node:util';
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';
import { runMigrations } from '../src/db/client.js';
import { APP_ROLE, ensureAppLogin } from '../src/stack/postgres.js';

const { values } = parseArgs({ options: { 'app-login': { type: 'boolean', default: false } } });
loadLocalStackEnv();
const config = loadConfigOrExit();
const url = required(
  config.migrationDatabaseUrl,
  'MIGRATION_DATABASE_URL',
  '(or DATABASE_URL) to know which database to migrate, as its owner',
);
await runMigrations(url);
console.log('Migrations applied.');

if (values['app-login']) {
  const app = new URL(
    required(config.databaseUrl, 'DATABASE_URL', 'to know which login role to set up'),
  );
  const role = decodeURIComponent(app.username);
  if (app.toString() === url || role === decodeURIComponent(new URL(url).username)) {
    throw new Error('--app-login needs a DATABASE_URL whose user is not the owner of the schema');
  }
  await ensureAppLogin(url, { role, password: decodeURIComponent(app.password) });
  console.log(`Login role ${role} is a member of ${APP_ROLE}.`);
}
