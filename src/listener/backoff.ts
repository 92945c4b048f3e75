/** Kept for the listener's public entry point; the implementation is neutral ground in src/common/. */
export { backoffDelay, DEFAULT_BACKOFF, exponentialDelay, type BackoffPolicy } from '../common/backoff.js';
