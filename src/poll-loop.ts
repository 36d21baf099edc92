// A background loop that does one round of work, pauses, and goes again until stopped: the
// shape of the worker's dispatchers (notification outbox, auto top-up requests).

export interface PollLoop {
  start(): void;
  /** Wakes the loop from its pause, lets the round in hand finish, and stops; safe to call twice. */
  stop(): Promise<void>;
}

export interface PollLoopOptions {
  pollIntervalMs: number;
  /** One round; answers true when there is more to do at once (no pause before the next). */
  round: () => Promise<boolean>;
  /** A round that threw; the loop goes on after its pause. */
  onError: (err: unknown) => void;
}

export function createPollLoop({ pollIntervalMs, round, onError }: PollLoopOptions): PollLoop {
  let loop: Promise<void> | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  async function run(): Promise<void> {
    while (!stopping) {
      let more = false;
      try {
        more = await round();
      } catch (err) {
        onError(err);
      }
      if (!more && !stopping) await pause(pollIntervalMs);
    }
  }

  return {
    start() {
      if (loop) return;
      stopping = false;
      loop = run();
    },
    async stop() {
      stopping = true;
      wake?.();
      await loop;
      loop = undefined;
    },
  };
}
