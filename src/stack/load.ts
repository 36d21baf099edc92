// Load drivers' shared pieces (the flow benchmark, the chaos suite): a bounded-concurrency loop and
// customers with funded wallets made in bulk, without a workflow each.
import { randomUUID } from 'node:crypto';
import type postgres from 'postgres';
import type { Ledger } from '../ledger/ledger.js';

/** Runs `fn` over `items` with at most `concurrency` at a time. */
export async function pool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        await fn(items[index]!, index);
      }
    }),
  );
}

/**
 * `count` customers with wallets in one statement (as the schema owner), each funded with
 * `credits` through the real posting (an adjustment keyed by `<label>-funding-<customer>`).
 */
export async function fundedCustomers(
  sql: postgres.Sql,
  ledger: Ledger,
  options: { count: number; credits: number; label: string },
): Promise<string[]> {
  const { count, credits, label } = options;
  const tag = randomUUID().slice(0, 8);
  const rows = await sql<{ id: string }[]>`
    with c as (
      insert into customers (email)
      select ${label} || '-' || ${tag} || '-' || g || '@example.test'
      from generate_series(1, ${count}::int) g
      returning id
    )
    insert into accounts (kind, customer_id, code)
    select 'wallet', id, 'wallet' from c
    returning customer_id as id`;
  const ids = rows.map((r) => r.id);
  if (credits > 0) {
    await pool(ids, 8, (id) =>
      ledger
        .postEntry({
          idempotencyKey: `${label}-funding-${id}`,
          type: 'adjustment',
          description: `Funding (${label})`,
          lines: [
            { account: { wallet: id }, amount: credits },
            { account: { system: 'adjustments' }, amount: -credits },
          ],
        })
        .then(() => undefined),
    );
  }
  return ids;
}
