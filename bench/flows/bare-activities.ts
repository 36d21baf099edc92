// The baseline workflows' activities: nothing but the round trip through Temporal.

export interface BareActivities {
  noop(step: string): Promise<string>;
}

export const bareActivities: BareActivities = {
  noop: (step) => Promise.resolve(step),
};
