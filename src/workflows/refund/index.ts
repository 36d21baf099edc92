// refund: one workflow type for every kind of refund; each kind's steps live in its own file.
import type { RefundInput, RefundState } from '../../shared.js';
import { disputeRefund } from './dispute.js';
import { purchaseRefund } from './purchase.js';
import { stripeRefund } from './stripe.js';
import { topupRefund } from './topup.js';

/** Refunds a top-up, a purchase, or follows a refund or dispute reported by Stripe. */
export async function refund(input: RefundInput): Promise<RefundState> {
  switch (input.kind) {
    case 'topup':
      return topupRefund(input);
    case 'stripe':
      return stripeRefund(input);
    case 'dispute':
      return disputeRefund(input);
    case 'verification':
    case 'order':
      return purchaseRefund(input);
  }
}
