// The customer's view: live balance, buying credits and verifications, history, notifications.
import { api, followEvents, idempotencyKey } from './api.js';
import { busy, credits, errorBox, fill, h, money, section, signed, table, when } from './dom.js';

/** Entry kinds a customer meets, for the history filter. */
const KINDS = [
  ['topup', 'Top-up'],
  ['auto_topup', 'Automatic top-up'],
  ['verification_purchase', 'Verification purchase'],
  ['verification_refund', 'Verification refund'],
  ['order_purchase', 'Order purchase'],
  ['order_refund', 'Order refund'],
  ['goodwill_refund', 'Goodwill refund'],
  ['refund_clawback', 'Top-up refunded'],
  ['adjustment', 'Adjustment'],
  ['grant', 'Grant'],
];
const kindLabel = (type) => KINDS.find(([k]) => k === type)?.[1] ?? type.replace(/_/g, ' ');

const PACKS = ['small', 'medium', 'large'];
const FINAL = new Set(['completed', 'refunded', 'failed']);

/** Mounts the customer's view in `root`; returns what stops its stream and timers. */
export function customerView(root) {
  const stop = new AbortController();
  const timers = new Set();
  const later = (fn, ms) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  // Balance, live over GET /v1/wallet/events.
  const balance = h('output', { id: 'balance', class: 'balance', 'aria-label': 'Balance' }, '…');
  const liveState = h('span', { class: 'live', role: 'status', text: 'connecting…' });
  const details = h('p', { class: 'details' });
  const balanceErrors = errorBox();

  async function loadWallet() {
    try {
      const wallet = await api('/v1/wallet');
      balance.textContent = credits(wallet.balance);
      fill(
        details,
        `Spendable now ${credits(wallet.available)} · paid ${credits(wallet.byCategory.paid)}`,
        ` · promotional ${credits(wallet.byCategory.promotional)}`,
      );
      balanceErrors.clear();
    } catch (err) {
      balanceErrors.show(err);
    }
  }

  // Buying credits: POST /v1/checkouts, then the Stripe Checkout link.
  const packSelect = h(
    'select',
    { id: 'pack', name: 'pack' },
    PACKS.map((p) => h('option', { value: p, text: p })),
  );
  const buyCredits = h('button', { type: 'submit', text: 'Buy credits' });
  const checkoutOut = h('div', { class: 'result', role: 'status' });
  const checkoutErrors = errorBox();
  const checkoutForm = h(
    'form',
    {
      'aria-label': 'Buy credits',
      onsubmit: (event) => {
        event.preventDefault();
        void busy(buyCredits, checkoutErrors, async () => {
          fill(checkoutOut, 'Opening a Stripe Checkout session…');
          const started = await api('/v1/checkouts', {
            method: 'POST',
            body: { pack: packSelect.value },
            headers: { 'idempotency-key': idempotencyKey('checkout') },
          });
          const read = () => api(`/v1/checkouts/${encodeURIComponent(started.id)}`);
          let checkout = await read();
          // The session is made by the workflow; its URL follows shortly when not there yet.
          for (let i = 0; !checkout.checkoutUrl && i < 20; i++) {
            await new Promise((r) => setTimeout(r, 500));
            checkout = await read();
          }
          if (!checkout.checkoutUrl) {
            fill(checkoutOut, `Checkout ${checkout.id} is ${checkout.status}; no link yet.`);
            return;
          }
          fill(
            checkoutOut,
            h(
              'p',
              {},
              `Checkout ${checkout.id}: ${credits(checkout.credits)} credits for `,
              `${money(checkout.amount, checkout.currency)} (${checkout.status}) — `,
              h('a', {
                href: checkout.checkoutUrl,
                target: '_blank',
                rel: 'noopener noreferrer',
                text: 'Pay at Stripe Checkout',
              }),
            ),
          );
        }).then(() => {
          if (!checkoutErrors.el.hidden) fill(checkoutOut);
        });
      },
    },
    h('label', { for: 'pack', text: 'Credit pack' }),
    packSelect,
    buyCredits,
  );

  // Verifications: buy one, follow it, cancel it (refunded).
  const serviceSelect = h('select', { id: 'service', name: 'service' });
  const buyVerification = h('button', { type: 'submit', text: 'Buy verification' });
  const verificationErrors = errorBox();
  const verificationList = h('div', { id: 'verification-list' });
  /** The verifications bought in this tab, by id, newest first. */
  const verifications = new Map();

  async function loadPrices() {
    try {
      const { items } = await api('/v1/prices');
      fill(
        serviceSelect,
        items.map((p) =>
          h('option', {
            value: `${p.service}|${p.country}`,
            text: `${p.service} (${p.country}) — ${credits(p.price)} credits`,
          }),
        ),
      );
      if (items.length === 0) verificationErrors.show({ code: 'no_prices', message: 'No prices.' });
    } catch (err) {
      verificationErrors.show(err);
    }
  }

  function renderVerifications() {
    const rows = [...verifications.values()].map((v) => {
      const label = `verification ${v.id}`;
      const cancel = h('button', {
        type: 'button',
        text: 'Cancel',
        'aria-label': `Cancel ${label}`,
        onclick: () =>
          void busy(cancel, verificationErrors, async () => {
            const state = await api(`/v1/verifications/${v.id}/cancel`, { method: 'POST' });
            verifications.set(v.id, state);
            renderVerifications();
          }),
      });
      return [
        h('code', { title: v.id, text: `${v.id.slice(0, 12)}…` }),
        `${v.service} (${v.country})`,
        credits(v.price),
        h('span', {
          class: `status status-${v.status}`,
          'data-testid': `status-${v.id}`,
          'aria-label': `Status of ${label}`,
          text: v.refundReason ? `${v.status} (${v.refundReason})` : v.status,
        }),
        v.phoneNumber ?? '—',
        v.status === 'pending' || v.status === 'active' ? cancel : '',
      ];
    });
    fill(
      verificationList,
      table('Your verifications', ['Id', 'Service', 'Price', 'Status', 'Number', ''], rows, ''),
    );
  }

  async function refreshVerifications() {
    const open = [...verifications.values()].filter((v) => !FINAL.has(v.status));
    for (const v of open) {
      try {
        verifications.set(v.id, await api(`/v1/verifications/${v.id}`));
      } catch (err) {
        verificationErrors.show(err);
      }
    }
    if (open.length > 0) renderVerifications();
  }

  /** Follows open verifications until they end; wallet events refresh them sooner. */
  function pollVerifications() {
    void refreshVerifications().then(() => {
      if (!stop.signal.aborted) later(pollVerifications, 2000);
    });
  }

  const verificationForm = h(
    'form',
    {
      'aria-label': 'Buy a verification',
      onsubmit: (event) => {
        event.preventDefault();
        void busy(buyVerification, verificationErrors, async () => {
          const [service, country] = serviceSelect.value.split('|');
          const started = await api('/v1/verifications', {
            method: 'POST',
            body: { service, country },
            headers: { 'idempotency-key': idempotencyKey('verification') },
          });
          const state = await api(`/v1/verifications/${started.id}`);
          verifications.set(state.id, state);
          renderVerifications();
        });
      },
    },
    h('label', { for: 'service', text: 'Service' }),
    serviceSelect,
    buyVerification,
  );

  // History with filters and the balance after each transaction.
  const kindSelect = h(
    'select',
    { id: 'history-kind', name: 'type' },
    h('option', { value: '', text: 'All kinds' }),
    KINDS.map(([value, text]) => h('option', { value, text })),
  );
  const fromInput = h('input', { id: 'history-from', name: 'from', type: 'date' });
  const toInput = h('input', { id: 'history-to', name: 'to', type: 'date' });
  const applyFilters = h('button', { type: 'submit', text: 'Apply filters' });
  const moreButton = h('button', { type: 'button', text: 'Load more', hidden: true });
  const historyErrors = errorBox();
  const historyTable = h('div', { id: 'history-table' });
  let historyRows = [];
  let cursor = null;

  function historyQuery(next) {
    const q = new URLSearchParams({ limit: '20' });
    if (kindSelect.value) q.set('type', kindSelect.value);
    if (fromInput.value) q.set('from', fromInput.value);
    // The day chosen is included: the API's upper bound is exclusive.
    if (toInput.value) {
      const end = new Date(`${toInput.value}T00:00:00Z`);
      end.setUTCDate(end.getUTCDate() + 1);
      q.set('to', end.toISOString().slice(0, 10));
    }
    if (next) q.set('cursor', next);
    return `/v1/wallet/transactions?${q}`;
  }

  async function loadHistory(next = null) {
    historyTable.setAttribute('aria-busy', 'true');
    try {
      const page = await api(historyQuery(next));
      historyRows = next ? [...historyRows, ...page.items] : page.items;
      cursor = page.nextCursor;
      moreButton.hidden = !cursor;
      historyErrors.clear();
      fill(
        historyTable,
        table(
          'Transactions, newest first',
          ['Date', 'Kind', 'Description', 'Amount', 'Balance after'],
          historyRows.map((t) => [
            when(t.createdAt),
            kindLabel(t.type),
            t.description,
            h('span', { class: Number(t.amount) < 0 ? 'debit' : 'credit', text: signed(t.amount) }),
            credits(t.balanceAfter),
          ]),
          'No transactions match.',
        ),
      );
    } catch (err) {
      historyErrors.show(err);
    } finally {
      historyTable.removeAttribute('aria-busy');
    }
  }
  moreButton.addEventListener('click', () => void loadHistory(cursor));

  const historyForm = h(
    'form',
    {
      class: 'filters',
      'aria-label': 'History filters',
      onsubmit: (event) => {
        event.preventDefault();
        void busy(applyFilters, historyErrors, () => loadHistory());
      },
    },
    h('label', { for: 'history-kind', text: 'Kind' }),
    kindSelect,
    h('label', { for: 'history-from', text: 'From' }),
    fromInput,
    h('label', { for: 'history-to', text: 'To' }),
    toInput,
    applyFilters,
  );

  // Notifications.
  const notificationList = h('ul', { class: 'notifications', 'aria-label': 'Notifications' });
  const notificationErrors = errorBox();
  async function loadNotifications() {
    try {
      const { items } = await api('/v1/notifications?limit=20');
      notificationErrors.clear();
      if (items.length === 0) {
        fill(notificationList, h('li', { class: 'empty', text: 'No notifications yet.' }));
        return;
      }
      fill(
        notificationList,
        items.map((n) =>
          h(
            'li',
            {},
            h('strong', { text: n.title }),
            h('span', { class: 'muted', text: ` ${when(n.createdAt)}` }),
            h('p', { text: n.body }),
          ),
        ),
      );
    } catch (err) {
      notificationErrors.show(err);
    }
  }

  fill(
    root,
    h(
      'div',
      { class: 'grid' },
      section(
        'wallet',
        'Wallet',
        h('p', {}, balance, ' credits ', liveState),
        details,
        balanceErrors.el,
      ),
      section('buy-credits', 'Buy credits', checkoutForm, checkoutOut, checkoutErrors.el),
      section(
        'notifications',
        'Notifications',
        h('button', {
          type: 'button',
          class: 'link',
          text: 'Refresh notifications',
          onclick: () => void loadNotifications(),
        }),
        notificationErrors.el,
        notificationList,
      ),
    ),
    section(
      'verifications',
      'Phone verifications',
      verificationForm,
      verificationErrors.el,
      verificationList,
    ),
    section('history', 'History', historyForm, historyErrors.el, historyTable, moreButton),
  );

  /** A balance change: everything that shows money is read again (the notice follows shortly). */
  function onBalanceChange() {
    void loadWallet();
    void loadHistory();
    void refreshVerifications();
    void loadNotifications();
    later(() => void loadNotifications(), 1000);
    later(() => void loadNotifications(), 3000);
  }

  followEvents('/v1/wallet/events', {
    signal: stop.signal,
    onEvent: ({ event, data }) => {
      if (event !== 'balance') return;
      const change = JSON.parse(data);
      balance.textContent = credits(change.balance);
      if (change.entry) onBalanceChange();
    },
    onState: (state) => {
      if (state === 'live') {
        liveState.textContent = 'live';
        liveState.className = 'live on';
        balanceErrors.clear();
      } else if (state === 'reconnecting') {
        liveState.textContent = 'reconnecting…';
        liveState.className = 'live';
      } else {
        liveState.textContent = 'not live';
        liveState.className = 'live';
        balanceErrors.show(state);
      }
    },
  });

  void loadWallet();
  void loadPrices();
  void loadHistory();
  void loadNotifications();
  renderVerifications();
  pollVerifications();

  return () => {
    stop.abort();
    for (const t of timers) clearTimeout(t);
  };
}
