import { createHash } from 'node:crypto';

/**
 * Boxel's per-realm advisory lock key: the first 8 bytes of SHA-256 of the exact realm URL
 * (UTF-8), read as a signed big-endian int64, as a decimal string for `$1::bigint`.
 * A string, not a number: int64 does not fit in a JS number.
 */
export function advisoryLockKey(realmURL: string): string {
  const digest = createHash('sha256').update(realmURL, 'utf8').digest();
  return digest.readBigInt64BE(0).toString(10);
}
