// The API and worker connect as a role that can post through the ledger and nothing more.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase, type Database } from '../src/db/client.js';
import { APP_ROLE, dropLogin, ensureAppLogin } from '../src/stack/postgres.js';
import { testDatabase } from './helpers.js';

let db: Database;

beforeAll(() => {
  db = testDatabase(2);
});

afterAll(async () => {
  await db.close();
});

/** Tables whose rows are never rewritten: the app may read and add, nothing else. */
const INSERT_ONLY = ['entries', 'postings', 'audit_log'];
/** Written only by a trigger with the owner's rights: the app may read it. */
const READ_ONLY = ['account_identities'];

describe('the app database role', () => {
  it('is an unprivileged member of the app role', async () => {
    const [me] = await db.sql<{ rolsuper: boolean; member: boolean; owns: string }[]>`
      select r.rolsuper, pg_has_role(current_user, ${APP_ROLE}, 'member') as member,
             (select count(*) from pg_tables where schemaname = 'public'
                and tableowner = current_user) as owns
      from pg_roles r where r.rolname = current_user`;
    expect(me).toEqual({ rolsuper: false, member: true, owns: '0' });
  });

  it.each([
    ['disable a ledger trigger', 'alter table postings disable trigger postings_append_only'],
    ['disable every trigger', 'alter table entries disable trigger all'],
    ['drop a guard', 'drop trigger entries_balanced on entries'],
    [
      'add a trigger',
      'create trigger sneak before insert on postings for each row execute function ledger_stamp_transaction()',
    ],
    [
      'replace a guard function',
      "create or replace function ledger_refuse_change() returns trigger language plpgsql as 'begin return null; end'",
    ],
    ['skip triggers for the session', 'set session_replication_role = replica'],
    ['truncate entries', 'truncate entries'],
    ['truncate postings', 'truncate postings'],
    ['truncate accounts', 'truncate accounts cascade'],
    ['alter a ledger table', 'alter table entries add column note text'],
    ['drop a check', 'alter table accounts drop constraint accounts_wallet_not_negative'],
    ['drop a ledger table', 'drop table postings'],
    ['create a table', 'create table public.shadow_ledger (id int)'],
    ['rewrite postings', 'update postings set amount = amount where false'],
    ['delete postings', 'delete from postings where false'],
    ['rewrite entries', "update entries set description = '' where false"],
    ['delete entries', 'delete from entries where false'],
    ['delete accounts', 'delete from accounts where false'],
    ['change an account owner', 'update accounts set customer_id = null where false'],
    ['rewrite the audit log', "update audit_log set reason = '' where false"],
    [
      'forge what an account was opened as',
      "insert into account_identities (account_id, kind, code, shard) values (-1, 'system', 'x', 0)",
    ],
  ])('cannot %s', async (_what, statement) => {
    await expect(db.sql.unsafe(statement)).rejects.toMatchObject({ code: '42501' });
  });

  it('keeps every other table writable and the ledger tables insert-only', async () => {
    const rows = await db.sql<
      {
        table: string;
        select: boolean;
        insert: boolean;
        update: boolean;
        delete: boolean;
        truncate: boolean;
        trigger: boolean;
        references: boolean;
      }[]
    >`
      select c.relname as table,
             has_table_privilege(c.oid, 'select') as select,
             has_table_privilege(c.oid, 'insert') as insert,
             has_table_privilege(c.oid, 'update') as update,
             has_table_privilege(c.oid, 'delete') as delete,
             has_table_privilege(c.oid, 'truncate') as truncate,
             has_table_privilege(c.oid, 'trigger') as trigger,
             has_table_privilege(c.oid, 'references') as references
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p')
      order by c.relname`;
    expect(rows.map((r) => r.table)).toEqual(
      expect.arrayContaining(['accounts', 'customers', 'payments', 'verifications', 'orders']),
    );
    for (const row of rows) {
      const { table, ...privileges } = row;
      const expected = READ_ONLY.includes(table)
        ? { select: true, insert: false, update: false, delete: false }
        : INSERT_ONLY.includes(table)
          ? { select: true, insert: true, update: false, delete: false }
          : table === 'accounts'
            ? { select: true, insert: true, update: false, delete: false }
            : { select: true, insert: true, update: true, delete: true };
      expect({ table, ...privileges }).toEqual({
        table,
        ...expected,
        truncate: false,
        trigger: false,
        references: false,
      });
    }
    // Accounts: the posting path may move a balance, and nothing else.
    const [columns] = await db.sql<{ balance: boolean; updated_at: boolean; others: boolean }[]>`
      select has_column_privilege('accounts', 'balance', 'update') as balance,
             has_column_privilege('accounts', 'updated_at', 'update') as updated_at,
             bool_or(has_column_privilege('accounts', a.attname, 'update')) as others
      from pg_attribute a
      where a.attrelid = 'accounts'::regclass and a.attnum > 0 and not a.attisdropped
        and a.attname not in ('balance', 'updated_at')`;
    expect(columns).toEqual({ balance: true, updated_at: true, others: false });
    const sequences = await db.sql<{ name: string; usage: boolean }[]>`
      select c.relname as name, has_sequence_privilege(c.oid, 'usage') as usage
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind = 'S'`;
    expect(sequences.filter((s) => !s.usage)).toEqual([]);
  });
});

describe('setting up the app login (as npm start does)', () => {
  it('creates a login role in creditflow_app, and updates its password on the next start', async () => {
    const owner = inject('ownerDatabaseUrl');
    const role = `creditflow_test_login_${randomBytes(4).toString('hex')}`;
    try {
      await ensureAppLogin(owner, { role, password: 'first-password' });
      const url = await ensureAppLogin(owner, { role, password: 'second-password' });
      expect(new URL(url).username).toBe(role);
      const app = createDatabase(url, { max: 1 });
      try {
        const [me] = await app.sql<{ user: string; member: boolean; superuser: boolean }[]>`
          select current_user as user, pg_has_role(current_user, ${APP_ROLE}, 'member') as member,
                 (select rolsuper from pg_roles where rolname = current_user) as superuser`;
        expect(me).toEqual({ user: role, member: true, superuser: false });
        await expect(app.sql`truncate postings`).rejects.toMatchObject({ code: '42501' });
      } finally {
        await app.close();
      }
    } finally {
      await dropLogin(owner, role);
    }
  });
});
