// The dashboard's entry: sign in with a bearer token, then the customer's or the operator's view.
import { SESSION_EXPIRED, api, claimsOf, session } from './api.js';
import { adminView } from './admin.js';
import { customerView } from './customer.js';
import { busy, errorBox, fill, h, section } from './dom.js';

const view = document.getElementById('view');
const whoami = document.getElementById('whoami');
/** Stops what the current view runs (event stream, timers) when leaving it. */
let leave = () => {};

/** Who the token says the user is, checked against the API. */
async function identify(token) {
  const claims = claimsOf(token);
  if (!claims || typeof claims.sub !== 'string') {
    throw Object.assign(new Error('That is not a bearer token (a JWT): paste the whole token.'), {
      code: 'invalid_token',
    });
  }
  if (claims.role === 'admin') {
    await api('/v1/admin/monitor?minutes=1', { token });
    return { role: 'admin', sub: claims.sub, label: claims.sub };
  }
  const customer = await api(`/v1/customers/${encodeURIComponent(claims.sub)}`, { token });
  return {
    role: 'customer',
    sub: claims.sub,
    label: customer.email ?? customer.name ?? customer.id,
    customer,
  };
}

function signOut() {
  session.clear();
  show();
}

function signInView(reason) {
  const errors = errorBox();
  if (reason) errors.show(reason);
  const input = h('textarea', {
    id: 'token',
    name: 'token',
    rows: 4,
    required: true,
    spellcheck: 'false',
    autocomplete: 'off',
    placeholder: 'eyJhbGciOiJIUzI1NiJ9…',
  });
  const button = h('button', { type: 'submit', text: 'Sign in' });
  const form = h(
    'form',
    {
      class: 'signin',
      'aria-label': 'Sign in',
      onsubmit: (event) => {
        event.preventDefault();
        const token = input.value.trim();
        void busy(button, errors, async () => {
          await identify(token);
          session.set(token);
          await show();
        });
      },
    },
    h('label', { for: 'token', text: 'Bearer token' }),
    input,
    h(
      'p',
      { class: 'hint' },
      'Mint one with ',
      h('code', { text: 'npm run token -- --customer <id>' }),
      ' or ',
      h('code', { text: 'npm run token -- --admin' }),
      '. It stays in this tab only.',
    ),
    button,
    errors.el,
  );
  fill(whoami);
  fill(view, section('signin', 'Sign in', form));
  input.focus();
}

/** Shows the view the session's token allows: sign-in, customer or admin. */
async function show() {
  leave();
  leave = () => {};
  const token = session.token;
  if (!token) return signInView();
  fill(view, h('p', { class: 'loading', role: 'status', text: 'Loading…' }));
  let who;
  try {
    who = await identify(token);
  } catch (err) {
    session.clear();
    return signInView(err);
  }
  fill(
    whoami,
    h('span', {}, 'Signed in as ', h('strong', { text: who.label }), ` (${who.role})`),
    h('button', { type: 'button', class: 'link', text: 'Sign out', onclick: signOut }),
  );
  leave = who.role === 'admin' ? adminView(view, who) : customerView(view);
}

// A call refused with 401 mid-session (the token expired): back to sign-in, saying why.
document.addEventListener(SESSION_EXPIRED, (event) => {
  if (!session.token) return;
  leave();
  leave = () => {};
  session.clear();
  signInView(event.detail);
});

void show();
