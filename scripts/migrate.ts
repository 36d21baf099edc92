// `npm run db:migrate`: applies drizzle/ migrations to DATABASE_URL (or the running local stack).
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';
import { runMigrations } from '../src/db/client.js';

loadLocalStackEnv();
const config = loadConfigOrExit();
const url = required(config.databaseUrl, 'DATABASE_URL', 'to know which database to migrate');
await runMigrations(url);
console.log('Migrations applied.');
