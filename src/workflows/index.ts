// Every workflow the worker registers.
export { adjustment } from './adjustment.js';
export { verificationPurchase } from './verification.js';
export { order } from './order.js';
export { checkout } from './checkout.js';
export { refund } from './refund/index.js';
export { reconciliation } from './reconciliation.js';
export { grant } from './grant.js';
