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
 * A transaction's notifications are queued together and in order, so the hint immediately
 * precedes its wildcard on every connection. A replica uses a hint only for the very next
 * notification, and only if that is the wildcard of the same realm; anything else (a wildcard from
 * a Boxel server or an older operator, which carries no hint) falls back to reading the epoch.
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
