// `npm run token -- --customer <id>` or `-- --admin [--sub <name>]` [`--ttl <seconds>`]: mints a
// bearer token for local use, valid for 12 hours (at most AUTH_MAX_TOKEN_LIFETIME).
import { parseArgs } from 'node:util';
import { mintToken } from '../src/api/auth.js';
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';

loadLocalStackEnv();
const { values } = parseArgs({
  options: {
    customer: { type: 'string' },
    admin: { type: 'boolean', default: false },
    sub: { type: 'string' },
    ttl: { type: 'string' },
  },
});
if (!values.admin && !values.customer) {
  console.error(
    'Usage: npm run token -- --customer <customer-id>   |   npm run token -- --admin [--sub <name>]',
  );
  process.exit(2);
}
const config = loadConfigOrExit();
const secret = required(
  config.auth.jwtSecret,
  'AUTH_JWT_SECRET',
  'to sign tokens (start the stack with npm start, or set it)',
);
// Twelve hours by default, never longer than the API accepts (AUTH_MAX_TOKEN_LIFETIME).
const maxTtl = config.auth.maxTokenLifetimeSeconds;
const ttl = values.ttl === undefined ? Math.min(12 * 60 * 60, maxTtl) : Number(values.ttl);
if (!Number.isInteger(ttl) || ttl < 1 || ttl > maxTtl) {
  console.error(
    `--ttl: must be a whole number of seconds from 1 to ${maxTtl} (AUTH_MAX_TOKEN_LIFETIME).`,
  );
  process.exit(2);
}
const token = await mintToken(
  secret,
  values.admin
    ? { sub: values.sub ?? 'admin', role: 'admin' }
    : { sub: values.customer!, role: 'customer' },
  ttl,
  // The API checks these when they are set, so its own tokens carry them.
  {
    ...(config.auth.issuer ? { iss: config.auth.issuer } : {}),
    ...(config.auth.audience ? { aud: config.auth.audience } : {}),
  },
);
console.log(token);
