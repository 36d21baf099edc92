// A customer's notification preferences and the one rule that reads them: which kinds, on which
// channels, from what amount. In-app delivery, e-mail delivery and the API all use it.
import type postgres from 'postgres';
import { NOTIFICATION_KINDS, type NotificationKind } from './outbox.js';

export const NOTIFICATION_CHANNELS = ['in_app', 'email'] as const;
export type NotificationChannel = (typeof NOTIFICATION_CHANNELS)[number];

/** Channels by kind; a kind left out gets every channel. */
export type ChannelsByKind = Partial<Record<NotificationKind, NotificationChannel[]>>;

export interface NotificationPreferences {
  /** Kinds to deliver at all; null means every kind. */
  kinds: NotificationKind[] | null;
  /** Messages whose amount (either sign) is below this are not delivered on any channel. */
  minAmount: bigint;
  /** As stored: null or a partial map. */
  channels: ChannelsByKind | null;
}

/** What a customer who never set preferences gets: every kind, every channel, any amount. */
export const DEFAULT_PREFERENCES: NotificationPreferences = {
  kinds: null,
  minAmount: 0n,
  channels: null,
};

type Queryable = postgres.Sql | postgres.TransactionSql;

export async function readPreferences(
  sql: Queryable,
  customerId: string,
): Promise<NotificationPreferences> {
  const [row] = await sql<
    { kinds: string[] | null; min_amount: string; channels: ChannelsByKind | null }[]
  >`
    select kinds, min_amount, channels from notification_preferences where customer_id = ${customerId}`;
  if (!row) return DEFAULT_PREFERENCES;
  return {
    kinds: row.kinds as NotificationKind[] | null,
    minAmount: BigInt(row.min_amount),
    channels: row.channels,
  };
}

/** The channels a kind goes to: the stored list, or every channel when the kind is left out. */
export function channelsFor(
  preferences: NotificationPreferences,
  kind: NotificationKind,
): NotificationChannel[] {
  return preferences.channels?.[kind] ?? [...NOTIFICATION_CHANNELS];
}

/** Every kind with its channels, as the API shows them. */
export function effectiveChannels(
  preferences: NotificationPreferences,
): Record<NotificationKind, NotificationChannel[]> {
  return Object.fromEntries(
    NOTIFICATION_KINDS.map((kind) => [kind, channelsFor(preferences, kind)]),
  ) as Record<NotificationKind, NotificationChannel[]>;
}

const abs = (value: bigint) => (value < 0n ? -value : value);

/** Whether a message of this kind and amount goes out on the channel. */
export function wants(
  preferences: NotificationPreferences,
  channel: NotificationChannel,
  message: { kind: NotificationKind; amount?: number | bigint | string | null },
): boolean {
  if (preferences.kinds !== null && !preferences.kinds.includes(message.kind)) return false;
  const amount = message.amount ?? null;
  if (amount !== null && abs(BigInt(amount)) < preferences.minAmount) return false;
  return channelsFor(preferences, message.kind).includes(channel);
}
