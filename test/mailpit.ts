// Reads what reached the run's mailpit through its API: the tests' view of the real SMTP path.
import { inject } from 'vitest';
import { eventually } from './helpers.js';

export interface CaughtMail {
  ID: string;
  /** Without the angle brackets. */
  MessageID: string;
  From: { Name: string; Address: string };
  To: Array<{ Name: string; Address: string }>;
  Subject: string;
}

export interface CaughtMailDetail extends CaughtMail {
  Text: string;
}

async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${inject('mailpitApiBase')}/api/v1${path}`);
  if (!res.ok) throw new Error(`mailpit ${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** Every message to the address, oldest first; tests give each customer an address of its own. */
export async function mailTo(address: string): Promise<CaughtMail[]> {
  const query = encodeURIComponent(`to:"${address}"`);
  const found = await api<{ messages: CaughtMail[] }>(`/search?query=${query}&limit=200`);
  // The search matches parts of addresses too: keep the exact recipient only.
  return found.messages.filter((m) => m.To.some((to) => to.Address === address)).reverse();
}

/** Waits until at least `count` messages reached the address, and lists them. */
export async function waitForMail(address: string, count = 1): Promise<CaughtMail[]> {
  return eventually(
    async () => {
      const mail = await mailTo(address);
      return mail.length >= count ? mail : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

export async function mailDetail(id: string): Promise<CaughtMailDetail> {
  return api<CaughtMailDetail>(`/message/${id}`);
}

/** The message as the SMTP server received it, headers and all. */
export async function rawMail(id: string): Promise<string> {
  const res = await fetch(`${inject('mailpitApiBase')}/api/v1/message/${id}/raw`);
  if (!res.ok) throw new Error(`mailpit raw ${id}: HTTP ${res.status}`);
  return res.text();
}
