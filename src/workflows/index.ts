// Every workflow the worker registers.
export { adjustment } from './adjustment.js';
export { checkout } from './checkout.js';
