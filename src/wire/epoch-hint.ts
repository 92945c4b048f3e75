/**
 * The epoch hint: a NOTIFY the operator sends, in the same statement and just before a realm's
 * wildcard `realm_file_changes`, carrying the realm's epoch as committed by that transaction.
 *
 * Why: a replica must acknowledge an epoch no newer than what it cleared, so without the hint it
 * reads the realm's epoch (one round trip) before dropping its cache, then writes its ack (a
 * second). The hint is delivered only after the transaction that set that epoch committed, so a
 * replica that receives it and then clears has cleared content at least that new: it may ack the
 * hinted epoch without reading, and the ack costs one round trip, like the bare floor.
 *
 * A replica handles a hint as its realm's wildcard (hook, drop, ack the hinted epoch), and skips
 * the wildcard that comes right after it from the same backend: a transaction's notifications
 * are queued together and in order, so that is the same transaction's, already handled. The hint
 * must be handled by itself, not merely remembered for the next wildcard: when one transaction
 * bumps a realm's epoch twice, PostgreSQL folds the second (identical) wildcard into the first,
 * and the second hint is the only word of the final epoch. A wildcard with no hint right before
 * it (a Boxel server's, an older operator's) still reads the epoch before clearing.
 * Unmodified Boxel servers do not LISTEN on this channel and never see it.
 */

/** This project's own channel (never one of Boxel's). Payload: `<epoch> <realm URL>`. */
export const REALM_EPOCH_HINT_CHANNEL = 'realm_operator_epoch_hint';

export interface RealmEpochHint {
  realmURL: string;
  epoch: number;
}

export function formatRealmEpochHint(hint: RealmEpochHint): string {
  return `${hint.epoch} ${hint.realmURL}`;
}

/** Undefined for anything that is not `<positive integer> <non-empty URL>`. */
export function parseRealmEpochHint(payload: string): RealmEpochHint | undefined {
  const match = /^([1-9][0-9]{0,18}) (\S+)$/.exec(payload);
  if (!match) return undefined;
  const epoch = Number(match[1]);
  return Number.isSafeInteger(epoch) ? { epoch, realmURL: match[2]! } : undefined;
}
