// `npm run check:ledger`: proves the ledger invariants; exits 1 and lists violations if any fail.
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';
import { createDatabase } from '../src/db/client.js';
import { checkLedger } from '../src/ledger/check.js';

loadLocalStackEnv();
const config = loadConfigOrExit();
const db = createDatabase(
  required(config.databaseUrl, 'DATABASE_URL', 'to know which ledger to check'),
  { max: 1 },
);
try {
  const report = await checkLedger(db.sql);
  const { accounts, entries, postings } = report.counts;
  console.log(`Checked ${accounts} accounts, ${entries} entries, ${postings} postings.`);
  if (report.ok) {
    console.log(
      'Ledger OK: every entry sums to zero, cached balances match postings, no wallet is or ever was negative, ' +
        'no key is duplicated, postings were written with their entries, no account changed hands.',
    );
  } else {
    console.log(`Ledger has ${report.violations.length} violation(s):`);
    for (const v of report.violations) console.log(`  ${v.invariant}: ${v.detail}`);
    process.exitCode = 1;
  }
} finally {
  await db.close();
}
