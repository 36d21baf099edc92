// The operator's view: the monitor, alerts, reconciliation reports and one customer's
// consistency check, each flow linked to its page in the Temporal UI.
import { api, idempotencyKey } from './api.js';
import {
  busy,
  credits,
  errorBox,
  fill,
  h,
  section,
  signed,
  table,
  temporalLink,
  when,
} from './dom.js';

const WINDOWS = [
  ['15', 'Last 15 minutes'],
  ['60', 'Last hour'],
  ['1440', 'Last day'],
  ['10080', 'Last week'],
];

function figure(label, value) {
  return h('div', { class: 'figure' }, h('dt', { text: label }), h('dd', { text: value }));
}

/** Mounts the operator's view in `root`; returns what stops it. */
export function adminView(root) {
  // Monitor.
  const windowSelect = h(
    'select',
    { id: 'monitor-window', name: 'minutes' },
    WINDOWS.map(([value, text]) => h('option', { value, text, selected: value === '60' })),
  );
  const monitorCustomer = h('input', {
    id: 'monitor-customer',
    name: 'customerId',
    autocomplete: 'off',
    placeholder: 'every customer',
  });
  const monitorOut = h('div', { id: 'monitor-out' });
  const monitorErrors = errorBox();
  const refreshMonitor = h('button', { type: 'submit', text: 'Refresh monitor' });

  async function loadMonitor() {
    monitorOut.setAttribute('aria-busy', 'true');
    try {
      const q = new URLSearchParams({ minutes: windowSelect.value });
      if (monitorCustomer.value.trim()) q.set('customerId', monitorCustomer.value.trim());
      const m = await api(`/v1/admin/monitor?${q}`);
      monitorErrors.clear();
      fill(
        monitorOut,
        h(
          'dl',
          { class: 'figures', 'aria-label': 'Monitor figures' },
          figure('Transactions', credits(m.transactions)),
          figure('Credits added', credits(m.creditsAdded)),
          figure('Spent', credits(m.spent)),
          figure('Refunded', credits(m.refunded)),
          figure('Clawed back', credits(m.clawedBack)),
          figure('Customers', credits(m.uniqueCustomers)),
        ),
        table(
          'Recent ledger entries',
          ['Entry', 'When', 'Kind', 'Customer', 'Amount', 'Flow'],
          m.recent.map((r) => [
            String(r.id),
            when(r.createdAt),
            r.type,
            r.customerId ? h('code', { text: r.customerId }) : '—',
            signed(r.amount),
            temporalLink(r.temporalUiUrl, r.workflowId),
          ]),
          'No ledger entries in this window.',
        ),
      );
    } catch (err) {
      monitorErrors.show(err);
    } finally {
      monitorOut.removeAttribute('aria-busy');
    }
  }

  const monitorForm = h(
    'form',
    {
      class: 'filters',
      'aria-label': 'Monitor window',
      onsubmit: (event) => {
        event.preventDefault();
        void busy(refreshMonitor, monitorErrors, loadMonitor);
      },
    },
    h('label', { for: 'monitor-window', text: 'Window' }),
    windowSelect,
    h('label', { for: 'monitor-customer', text: 'Customer id' }),
    monitorCustomer,
    refreshMonitor,
  );

  // Alerts.
  const alertStatus = h(
    'select',
    { id: 'alert-status', name: 'status' },
    h('option', { value: 'open', text: 'Open' }),
    h('option', { value: 'acked', text: 'Acknowledged' }),
    h('option', { value: '', text: 'All' }),
  );
  const alertsOut = h('div', { id: 'alerts-out' });
  const alertErrors = errorBox();
  const refreshAlerts = h('button', { type: 'submit', text: 'Refresh alerts' });

  async function loadAlerts() {
    try {
      const q = new URLSearchParams({ limit: '20' });
      if (alertStatus.value) q.set('status', alertStatus.value);
      const { items } = await api(`/v1/admin/alerts?${q}`);
      alertErrors.clear();
      fill(
        alertsOut,
        table(
          'Alerts, newest first',
          ['Severity', 'Kind', 'Message', 'Seen', 'Last seen', ''],
          items.map((a) => {
            const ack = h('button', {
              type: 'button',
              text: 'Acknowledge',
              'aria-label': `Acknowledge alert ${a.id}`,
              onclick: () =>
                void busy(ack, alertErrors, async () => {
                  await api(`/v1/admin/alerts/${a.id}/ack`, { method: 'POST' });
                  await loadAlerts();
                }),
            });
            return [
              h('span', { class: `severity ${a.severity}`, text: a.severity }),
              a.kind,
              a.message,
              `${a.occurrences}×`,
              when(a.lastSeenAt),
              a.status === 'open' ? ack : `acknowledged by ${a.ackedBy ?? '?'}`,
            ];
          }),
          'No alerts.',
        ),
      );
    } catch (err) {
      alertErrors.show(err);
    }
  }

  const alertForm = h(
    'form',
    {
      class: 'filters',
      'aria-label': 'Alert filter',
      onsubmit: (event) => {
        event.preventDefault();
        void busy(refreshAlerts, alertErrors, loadAlerts);
      },
    },
    h('label', { for: 'alert-status', text: 'Status' }),
    alertStatus,
    refreshAlerts,
  );

  // Reconciliation reports.
  const runsOut = h('div', { id: 'runs-out' });
  const reportOut = h('div', { id: 'report-out' });
  const runErrors = errorBox();
  const runNow = h('button', { type: 'button', text: 'Run reconciliation now' });

  async function showReport(id, button) {
    await busy(button, runErrors, async () => {
      const report = await api(`/v1/admin/reconciliations/${encodeURIComponent(id)}`);
      fill(
        reportOut,
        h('h3', { text: `Report ${report.id}` }),
        h(
          'p',
          {},
          `${report.status} · ${report.matched} matched · ${report.findingsCount} findings · `,
          temporalLink(report.temporalUiUrl, report.workflowId),
        ),
        table(
          'Findings',
          ['Kind', 'Action', 'Outcome', 'Amount'],
          report.findings.map((f) => [
            f.kind,
            f.action,
            f.outcome,
            f.amount === null ? '—' : `${f.amount} ${f.currency ?? ''}`,
          ]),
          'No findings: everything matched.',
        ),
      );
    });
  }

  async function loadRuns() {
    try {
      const { items } = await api('/v1/admin/reconciliations?limit=10');
      runErrors.clear();
      fill(
        runsOut,
        table(
          'Reconciliation runs, newest first',
          ['Started', 'Trigger', 'Status', 'Window', 'Matched', 'Findings', 'Flow', ''],
          items.map((r) => {
            const view = h('button', {
              type: 'button',
              text: 'View',
              'aria-label': `View report ${r.id}`,
            });
            view.addEventListener('click', () => void showReport(r.id, view));
            return [
              when(r.startedAt),
              r.trigger,
              r.status,
              `${when(r.window.from)} – ${when(r.window.to)}`,
              String(r.matched),
              String(r.findingsCount),
              temporalLink(r.temporalUiUrl, r.workflowId),
              view,
            ];
          }),
          'No reconciliation runs yet.',
        ),
      );
    } catch (err) {
      runErrors.show(err);
    }
  }

  runNow.addEventListener(
    'click',
    () =>
      void busy(runNow, runErrors, async () => {
        await api('/v1/admin/reconciliations', {
          method: 'POST',
          body: {},
          headers: { 'idempotency-key': idempotencyKey('reconciliation') },
        });
        await loadRuns();
      }),
  );

  // One customer's consistency check.
  const refInput = h('input', {
    id: 'consistency-ref',
    name: 'ref',
    required: true,
    autocomplete: 'off',
    placeholder: 'id, e-mail or external id',
  });
  const check = h('button', { type: 'submit', text: 'Check consistency' });
  const consistencyOut = h('div', { id: 'consistency-out', role: 'status' });
  const consistencyErrors = errorBox();
  const consistencyForm = h(
    'form',
    {
      class: 'filters',
      'aria-label': 'Consistency check',
      onsubmit: (event) => {
        event.preventDefault();
        fill(consistencyOut);
        void busy(check, consistencyErrors, async () => {
          const ref = refInput.value.trim();
          const r = await api(`/v1/admin/customers/${encodeURIComponent(ref)}/consistency`);
          fill(
            consistencyOut,
            h(
              'p',
              { class: r.consistent ? 'verdict ok' : 'verdict bad' },
              r.consistent
                ? `Consistent: the books of ${r.customerId} agree.`
                : `Inconsistent: ${r.problems.length} problem(s) for ${r.customerId}.`,
            ),
            h(
              'dl',
              { class: 'figures', 'aria-label': 'Wallet figures' },
              figure('Cached balance', credits(r.wallet.cachedBalance)),
              figure('Sum of postings', credits(r.wallet.postingsSum)),
              figure('Postings', credits(r.wallet.postings)),
              figure('Payments', credits(r.payments.count)),
              figure('Grants hold', credits(r.grants.remaining)),
              figure('Open debts', credits(r.debts.openCredits)),
            ),
            r.problems.length > 0
              ? h(
                  'ul',
                  { 'aria-label': 'Problems' },
                  r.problems.map((p) => h('li', {}, h('strong', { text: p.code }), ' ', p.message)),
                )
              : null,
            table(
              'Wallet by kind',
              ['Kind', 'Entries', 'Net'],
              r.wallet.byType.map((t) => [t.type, String(t.entries), signed(t.net)]),
              'No postings.',
            ),
          );
        });
      },
    },
    h('label', { for: 'consistency-ref', text: 'Customer' }),
    refInput,
    check,
  );

  fill(
    root,
    section('monitor', 'Monitor', monitorForm, monitorErrors.el, monitorOut),
    h(
      'div',
      { class: 'grid' },
      section(
        'consistency',
        'Consistency check',
        consistencyForm,
        consistencyErrors.el,
        consistencyOut,
      ),
      section('alerts', 'Alerts', alertForm, alertErrors.el, alertsOut),
    ),
    section('reconciliation', 'Reconciliation reports', runNow, runErrors.el, runsOut, reportOut),
  );

  void loadMonitor();
  void loadAlerts();
  void loadRuns();
  return () => {};
}
