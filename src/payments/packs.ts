// Credit packs a customer can buy: credits and the card price in minor units (integers).
import { z } from 'zod';

export interface CreditPack {
  credits: number;
  /** Price in the currency's minor units (cents). */
  amount: number;
  /** ISO 4217, lower case as Stripe uses it. */
  currency: string;
  /** Days after crediting at which the pack's credits expire (their grant's expiresAt); none: never. */
  expiresInDays?: number;
}

export type CreditPacks = Record<string, CreditPack>;

/** The defaults; CREDIT_PACKS replaces them. */
export const DEFAULT_CREDIT_PACKS: CreditPacks = {
  small: { credits: 100, amount: 500, currency: 'eur' },
  medium: { credits: 550, amount: 2500, currency: 'eur' },
  large: { credits: 1200, amount: 5000, currency: 'eur' },
};

const positiveInt = z.number().int().positive().max(1_000_000_000);

/** When credits of `pack` credited at `creditedAt` expire, or null when the pack's never do. */
export function packExpiry(pack: CreditPack | undefined, creditedAt: Date): Date | null {
  if (!pack?.expiresInDays) return null;
  return new Date(creditedAt.getTime() + pack.expiresInDays * 24 * 60 * 60 * 1000);
}

export const creditPacksSchema = z
  .record(
    z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'pack names are lower-case words'),
    z
      .object({
        credits: positiveInt,
        amount: positiveInt,
        currency: z
          .string()
          .regex(/^[a-zA-Z]{3}$/, 'must be a three-letter currency code')
          .transform((v) => v.toLowerCase()),
        expiresInDays: z
          .number()
          .int('must be a whole number of days')
          .min(1, 'must be at least 1 day')
          .max(3650, 'must be at most 3650 days (10 years)')
          .optional(),
      })
      .strict(),
  )
  .refine((packs) => Object.keys(packs).length > 0, { message: 'needs at least one pack' });
