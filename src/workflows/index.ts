// Every workflow the worker registers.
export { adjustment } from './adjustment.js';
export { order } from './order.js';
