// Talking to /v1: the signed-in token, JSON calls that turn the API's error shape into an
// ApiError, and the wallet's event stream read with fetch (EventSource cannot send a bearer).

const TOKEN_KEY = 'creditflow.token';

/** An answer the API refused: its `{ error: { code, message } }`, or what went wrong on the way. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The bearer token of this browser tab (sessionStorage: gone when the tab closes). */
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** The claims of a JWT (not verified here: the API verifies every call), or null. */
export function claimsOf(token) {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json);
    return typeof claims === 'object' && claims !== null ? claims : null;
  } catch {
    return null;
  }
}

/** A fresh Idempotency-Key, so a retried click never buys twice. */
export const idempotencyKey = (what) => `dashboard-${what}-${crypto.randomUUID()}`;

async function errorOf(res) {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    if (body && body.error && typeof body.error.message === 'string') {
      return new ApiError(res.status, body.error.code ?? 'error', body.error.message);
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(res.status, `http_${res.status}`, text.trim() || res.statusText);
}

/** Tells the page the session's token no longer works (expired, revoked), so it asks for another. */
function expired(err) {
  if (err.status === 401) document.dispatchEvent(new CustomEvent(SESSION_EXPIRED, { detail: err }));
}

/** The event `expired` sends, with the API's refusal as its detail. */
export const SESSION_EXPIRED = 'creditflow:session-expired';

/** Calls the API with the session's token; resolves to the JSON body, rejects with ApiError. */
export async function api(path, { method = 'GET', body, headers = {}, token } = {}) {
  const bearer = token ?? session.token;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: {
        accept: 'application/json',
        ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, 'network_error', `The API did not answer (${err.message}).`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (!token) expired(err);
    throw err;
  }
  return res.status === 204 ? null : res.json();
}

/** Splits an SSE text buffer into complete events; returns them and the unfinished rest. */
export function parseEvents(buffer) {
  const events = [];
  const blocks = buffer.replace(/\r\n?/g, '\n').split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length > 0) events.push({ event, data: data.join('\n') });
  }
  return { events, rest };
}

/**
 * Follows an event stream until `signal` aborts, reconnecting after a drop (1 s, then up to
 * 15 s apart). `onEvent({ event, data })` gets each event; `onState` gets 'live',
 * 'reconnecting' or an ApiError the API answered with (then it stops: e.g. a token expired).
 */
export function followEvents(path, { onEvent, onState, signal }) {
  const run = async () => {
    let delay = 1000;
    while (!signal.aborted) {
      try {
        const res = await fetch(path, {
          headers: { accept: 'text/event-stream', authorization: `Bearer ${session.token}` },
          signal,
        });
        if (!res.ok) {
          const err = await errorOf(res);
          // Too many streams or a server fault: try again later; anything else will not heal.
          if (res.status !== 429 && res.status < 500) {
            onState(err);
            expired(err);
            return;
          }
          throw err;
        }
        onState('live');
        delay = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const parsed = parseEvents(buffer + value);
          buffer = parsed.rest;
          for (const event of parsed.events) onEvent(event);
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && err.status !== 429 && err.status < 500) {
          onState(err);
          return;
        }
      }
      if (signal.aborted) return;
      onState('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15_000);
    }
  };
  void run();
}
