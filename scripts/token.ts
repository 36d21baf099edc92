// `npm run token -- --customer <id>` or `-- --admin [--sub <name>]`: mints a bearer token for local use.
import { parseArgs } from 'node:util';
import { mintToken } from '../src/api/auth.js';
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';

loadLocalStackEnv();
const { values } = parseArgs({
  options: {
    customer: { type: 'string' },
    admin: { type: 'boolean', default: false },
    sub: { type: 'string' },
    ttl: { type: 'string', default: String(12 * 60 * 60) },
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
const token = await mintToken(
  secret,
  values.admin
    ? { sub: values.sub ?? 'admin', role: 'admin' }
    : { sub: values.customer!, role: 'customer' },
  Number(values.ttl),
);
console.log(token);
