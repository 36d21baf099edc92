// Small helpers for building the page without a framework, and the formats it shows.

/**
 * Creates an element: `attrs` are attributes, except `text` (text content), `class`, and
 * `on<event>` (listeners); children are nodes or strings, null and false skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') el.textContent = String(value);
    else if (name === 'class') el.className = value;
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A section with a heading, its region named by the heading. */
export function section(id, title, ...children) {
  return h(
    'section',
    { class: 'card', id, 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title`, text: title }),
    ...children,
  );
}

/** Where a section says what failed: the API's code and message, announced to screen readers. */
export function errorBox() {
  const box = h('div', { class: 'error', role: 'alert', hidden: true });
  return {
    el: box,
    show(err) {
      const code = err && err.code ? err.code : 'error';
      const message = err && err.message ? err.message : String(err);
      fill(box, h('strong', { text: code }), ' ', message);
      box.hidden = false;
    },
    clear() {
      box.replaceChildren();
      box.hidden = true;
    },
  };
}

/** Runs `work` with `button` disabled and marked busy; errors go to `errors`. */
export async function busy(button, errors, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  errors.clear();
  try {
    return await work();
  } catch (err) {
    errors.show(err);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

const numbers = new Intl.NumberFormat('en');
/** Credits as a grouped integer; big balances arrive as decimal strings and stay exact. */
export const credits = (value) =>
  typeof value === 'string' ? value.replace(/\B(?=(\d{3})+(?!\d))/g, ',') : numbers.format(value);

/** A signed amount: +100 / −40. */
export const signed = (value) => {
  const text = credits(value);
  return text.startsWith('-') ? `−${text.slice(1)}` : `+${text}`;
};

const dates = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'medium' });
export const when = (iso) => (iso ? dates.format(new Date(iso)) : '—');

/** Money in minor units: 500 eur → €5.00. */
export const money = (amount, currency) =>
  new Intl.NumberFormat('en', { style: 'currency', currency: currency.toUpperCase() }).format(
    amount / 100,
  );

/** A table with a caption, header row and body rows; `empty` shown when there are none. */
export function table(caption, headers, rows, empty = 'Nothing yet.') {
  if (rows.length === 0) return h('p', { class: 'empty', text: empty });
  return h(
    'table',
    {},
    h('caption', { text: caption }),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((t) => h('th', { scope: 'col', text: t })),
      ),
    ),
    h(
      'tbody',
      {},
      rows.map((cells) =>
        h(
          'tr',
          {},
          cells.map((c) => h('td', {}, c)),
        ),
      ),
    ),
  );
}

/** A link into the Temporal UI opening in a new tab, or the workflow id when there is none. */
export function temporalLink(url, workflowId) {
  if (!url) return workflowId ? h('code', { text: workflowId }) : '—';
  return h('a', {
    href: url,
    target: '_blank',
    rel: 'noopener noreferrer',
    text: 'Temporal UI',
    'aria-label': `Open ${workflowId ?? 'the workflow'} in the Temporal UI`,
  });
}
