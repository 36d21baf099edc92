// Every workflow the worker registers.
export { adjustment } from './adjustment.js';
