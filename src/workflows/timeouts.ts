// Activity timeouts shared by the workflows, and read by the Stripe gateway and the tests, so
// a client's own timeout and retries can be checked against the activity that wraps it.

/** Every activity heartbeats (the activity wrapper does it each second while it runs). */
export const HEARTBEAT_TIMEOUT_MS = 5_000;

/** Database steps: one short transaction. The worker's statement timeout stays below this. */
export const DB_STEP_START_TO_CLOSE_MS = 10_000;

/** Checkout steps that call Stripe: the Stripe client's timeout and retries fit inside. */
export const STRIPE_STEP_START_TO_CLOSE_MS = 30_000;

/** SMS provider calls. */
export const PROVIDER_STEP_START_TO_CLOSE_MS = 15_000;

/** Releasing a number: a few tries, then it is flagged for an operator. */
export const RELEASE_MAX_ATTEMPTS = 4;
export const RELEASE_SCHEDULE_TO_CLOSE_MS = 2 * 60_000;
