// Names the baseline workflows and their driver share (kept out of the workflow module, which
// the driver does not load).
export const bare = {
  verification: 'bareVerification',
  topup: 'bareTopup',
  settledUpdate: 'bareSettled',
  eventSignal: 'bareEvent',
} as const;
