// Alert rules on postings: run by the ledger after a posting commits (its afterCommit hook), so a
// slow or failing rule never holds up or fails the money movement it looks at.
import type postgres from 'postgres';
import type { AfterCommit, PostedEntry } from '../ledger/ledger.js';
import { raiseAlert, type AlertSinks } from './alerts.js';

export interface PostingAlertSettings {
  /** A wallet posting taking more than this many credits raises `large_deduction`. */
  largeDeduction: number;
  /** More than this many transactions of one customer within `velocityMinutes`… */
  velocityCount: number;
  /** …raises `customer_velocity`, once per burst. */
  velocityMinutes: number;
}

/** The rules' settings plus where they report (the worker passes its logger and counter). */
export interface PostingAlertRules extends PostingAlertSettings {
  logger?: AlertSinks['log'];
}

type Sql = postgres.Sql;

/** The wallet lines of an entry: customer id and signed amount. */
function walletLines(entry: PostedEntry) {
  return entry.lines.flatMap((l) =>
    'wallet' in l.account ? [{ ...l, customerId: l.account.wallet }] : [],
  );
}

/** Raises `large_deduction` for each wallet line of the entry that takes more than the threshold. */
export async function checkLargeDeduction(
  sql: Sql,
  entry: PostedEntry,
  settings: Pick<PostingAlertSettings, 'largeDeduction'>,
  sinks: AlertSinks = {},
): Promise<void> {
  for (const line of walletLines(entry)) {
    if (line.amount >= -settings.largeDeduction) continue;
    await raiseAlert(
      sql,
      {
        key: `large_deduction:${entry.entryId}:${line.customerId}`,
        kind: 'large_deduction',
        severity: 'warning',
        message:
          `Entry ${entry.entryId} (${entry.type}) took ${-line.amount} credits from one wallet, ` +
          `above ALERT_LARGE_DEDUCTION (${settings.largeDeduction}). Check that it was meant.`,
        details: {
          entryId: entry.entryId,
          type: entry.type,
          amount: line.amount,
          threshold: settings.largeDeduction,
        },
        customerId: line.customerId,
      },
      sinks,
    );
  }
}

/**
 * Raises `customer_velocity` when a customer's wallet has had more than `velocityCount` entries in
 * the last `velocityMinutes`. The key names the customer and the window bucket (minutes since the
 * epoch divided by the window), and nothing is raised while an alert of the current or previous
 * bucket exists: one alert per burst, not one per transaction of it.
 */
export async function checkVelocity(
  sql: Sql,
  entry: PostedEntry,
  settings: Pick<PostingAlertSettings, 'velocityCount' | 'velocityMinutes'>,
  sinks: AlertSinks = {},
): Promise<void> {
  const windowMs = settings.velocityMinutes * 60_000;
  for (const line of walletLines(entry)) {
    // An account appears once per entry, so the (count+1)-th newest posting of the wallet is the
    // (count+1)-th newest transaction; if it is inside the window there were more than `count`.
    const [oldest] = await sql<{ inside: boolean; bucket: string }[]>`
      select created_at > now() - make_interval(mins => ${settings.velocityMinutes}) as inside,
             floor(extract(epoch from now()) * 1000 / ${windowMs})::bigint::text as bucket
      from postings
      where account_id = ${line.accountId}
      order by id desc
      offset ${settings.velocityCount} limit 1`;
    if (!oldest?.inside) continue;
    const bucket = Number(oldest.bucket);
    const key = `customer_velocity:${line.customerId}:${bucket}`;
    const [already] = await sql`
      select 1 from alerts
      where key in (${key}, ${`customer_velocity:${line.customerId}:${bucket - 1}`})`;
    if (already) continue;
    await raiseAlert(
      sql,
      {
        key,
        kind: 'customer_velocity',
        severity: 'warning',
        message:
          `More than ${settings.velocityCount} transactions of one customer within ` +
          `${settings.velocityMinutes} minutes (ALERT_VELOCITY_COUNT / ALERT_VELOCITY_MINUTES). ` +
          'Look at the customer’s recent transactions for abuse or a client retrying in a loop.',
        details: {
          entryId: entry.entryId,
          type: entry.type,
          count: settings.velocityCount,
          minutes: settings.velocityMinutes,
          windowStart: new Date(bucket * windowMs).toISOString(),
        },
        customerId: line.customerId,
      },
      sinks,
    );
  }
}

/**
 * The ledger hook that evaluates every posting rule. Each rule is caught on its own: a failing
 * rule is logged and the others still run.
 */
export function postingAlertHook(
  sql: Sql,
  rules: PostingAlertRules,
  counter?: AlertSinks['counter'],
): AfterCommit {
  const sinks: AlertSinks = { log: rules.logger, counter };
  const guarded = async (name: string, entry: PostedEntry, run: () => Promise<void>) => {
    try {
      await run();
    } catch (err) {
      try {
        rules.logger?.error(
          { rule: name, entryId: entry.entryId, err: err instanceof Error ? err.message : err },
          'alert rule failed; the posting is unaffected',
        );
      } catch {
        // Nothing more to do: the rule is best effort.
      }
    }
  };
  return async (entry) => {
    if (!entry.lines.some((l) => 'wallet' in l.account)) return;
    await guarded('large_deduction', entry, () => checkLargeDeduction(sql, entry, rules, sinks));
    await guarded('customer_velocity', entry, () => checkVelocity(sql, entry, rules, sinks));
  };
}
