// The request a piece of work belongs to, carried through async calls: the API runs each request
// inside it, the worker each activity that carries a request id. The logger adds it to every line
// written inside (see src/logger.ts), and the Temporal client sends it on with workflow starts.
import { AsyncLocalStorage } from 'node:async_hooks';

export interface RequestContext {
  requestId: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** Runs `fn` as part of the request `requestId`. */
export function runInRequest<T>(requestId: string, fn: () => T): T {
  return storage.run({ requestId }, fn);
}

/** The request id of the work running now, if it belongs to one. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}
