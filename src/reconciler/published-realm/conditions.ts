/**
 * Status conditions for PublishedRealm, following kstatus: `Ready` is always present;
 * `Reconciling` and `Stalled` are present only while True (so Flux, Argo CD and
 * `kubectl wait --for=condition=Ready` read them correctly). Pure functions over a status copy.
 */
import type { Condition, PublishedRealmStatus } from '../../api/v1alpha1/published-realm-types.js';

export const READY = 'Ready';
export const RECONCILING = 'Reconciling';
export const STALLED = 'Stalled';
/**
 * The published realm's own Matrix user (`realm/_published_<disk id>`, as Boxel registers it on a
 * first publish): True once registered (or found existing, its derived password logging in);
 * False with `RealmUserRegistrationFailed`. Absent when Matrix is not configured (Ready's message
 * then says the realm user was not registered). Its message names the Matrix
 * user id, which is how a later reconcile (or a restarted operator) knows not to register again.
 */
export const REALM_USER_REGISTERED = 'RealmUserRegistered';

/**
 * Reasons, CamelCase, stable: alerting and people key on them. Each names one thing.
 *
 * Condition reasons (`Ready`, and `Reconciling`/`Stalled` with the same reason). An Event with
 * the Ready reason is recorded when Ready's status or reason changes — not for the in-progress
 * `Publishing`/`RollingBack`/`AwaitingAcknowledgement`, nor for a Ready reached in the reconcile
 * that published (the publish's own Event says it: one Event per successful publish):
 * - `Published` (Ready=True): every live replica acknowledged the current content.
 * - `PublishedNotifyOnly` (Ready=True): published, but some or all replicas could only be told by NOTIFY.
 * - `Publishing` (Reconciling): checks passed; copying and committing the content. Written only
 *   when the publish takes longer than a moment (1 s by default); a faster one goes straight
 *   to `AwaitingAcknowledgement` or Ready (Reconciling is implied meanwhile: observedGeneration lags).
 * - `AwaitingAcknowledgement` (Reconciling): committed; waiting for live replicas to drop their caches.
 * - `PublishFailed` (Reconciling, Warning Event): a transient failure; retried with backoff.
 * - `RealmUserRegistrationFailed` (Reconciling, Warning Event): registering the realm user on
 *   Matrix failed; retried with backoff. On a first publish nothing is published until it
 *   succeeds (Boxel registers the user before writing its permission rows); a realm published
 *   before Matrix was configured waits for it before Ready. Stalled with the same reason when the
 *   homeserver returns another user id than the one the permission row would name (both named).
 * - `RolledBack` (Ready=True): `spec.rollbackTo`'s kept version is live and acknowledged (as for
 *   `Published`; its message says when replicas could only be told by NOTIFY).
 * - `RollingBack` (Reconciling): swapping to the kept version named by `spec.rollbackTo` (written,
 *   like `Publishing`, only when the swap takes longer than a moment).
 * - `Suspended` (Ready=False, neither Reconciling nor Stalled): `spec.suspend` is true.
 * - Stalled (a person must act; re-checked with growing delays, never copying anything):
 *   `InvalidSpec`, `SourceRealmUnavailable`, `URLAlreadyPublished` (another PublishedRealm has the
 *   URL), `URLTakenByRealm` (the URL is registered as a source or bootstrap realm),
 *   `URLOverlapsRealm` (the URL contains or is inside another realm's), `RealmTooLarge`
 *   (over the operator's --max-realm-files/--max-realm-bytes), `UnsafeDatabaseValue`,
 *   `VersionNotKept` (`spec.rollbackTo` names a version that is not kept, or nothing is published yet),
 *   `NotAuthorized` (a Boxel authorization rule refused the publish, or fails now for a realm
 *   already published, which then stays published as it is: the message names the rule and the fix).
 *
 * Event-only reasons (one per action):
 * - `ContentPublished` / `ContentRepublished` (action `Publish`): a publish committed, with the counts.
 * - `ContentRolledBack` (action `Rollback`): a rollback to a kept version committed.
 * - `ReindexEnqueued` (action `Reindex`): the reindex job for an epoch was enqueued.
 * - `RealmUserRegistered` (action `RegisterRealmUser`): the realm user was registered on Matrix.
 *
 * `RealmUserRegistered` condition reasons: `RealmUserRegistered` (True), `RealmUserRegistrationFailed` (False).
 * - `Unpublished` / `NotUnpublished` (action `Unpublish`): on deletion.
 */
export const Reasons = {
  Published: 'Published',
  PublishedNotifyOnly: 'PublishedNotifyOnly',
  Publishing: 'Publishing',
  PublishFailed: 'PublishFailed',
  AwaitingAcknowledgement: 'AwaitingAcknowledgement',
  RolledBack: 'RolledBack',
  RollingBack: 'RollingBack',
  VersionNotKept: 'VersionNotKept',
  ContentRolledBack: 'ContentRolledBack',
  Suspended: 'Suspended',
  InvalidSpec: 'InvalidSpec',
  SourceRealmUnavailable: 'SourceRealmUnavailable',
  URLAlreadyPublished: 'URLAlreadyPublished',
  URLOverlapsRealm: 'URLOverlapsRealm',
  URLTakenByRealm: 'URLTakenByRealm',
  RealmTooLarge: 'RealmTooLarge',
  UnsafeDatabaseValue: 'UnsafeDatabaseValue',
  NotAuthorized: 'NotAuthorized',
  RealmUserRegistered: 'RealmUserRegistered',
  RealmUserRegistrationFailed: 'RealmUserRegistrationFailed',
  ContentPublished: 'ContentPublished',
  ContentRepublished: 'ContentRepublished',
  ReindexEnqueued: 'ReindexEnqueued',
  Unpublished: 'Unpublished',
  NotUnpublished: 'NotUnpublished',
} as const;

/** Event `action`s: what the operator did or tried. */
export const Actions = { Reconcile: 'Reconcile', Publish: 'Publish', Rollback: 'Rollback', Reindex: 'Reindex', Unpublish: 'Unpublish', RegisterRealmUser: 'RegisterRealmUser' } as const;

export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** Sets a condition, keeping `lastTransitionTime` when its status did not change. */
export function setCondition(conditions: Condition[], input: ConditionInput, generation: number, now: Date): Condition[] {
  const existing = conditions.find((c) => c.type === input.type);
  const next: Condition = {
    type: input.type,
    status: input.status,
    observedGeneration: generation,
    lastTransitionTime: existing && existing.status === input.status ? existing.lastTransitionTime : now.toISOString(),
    reason: input.reason,
    message: truncate(input.message),
  };
  return [...conditions.filter((c) => c.type !== input.type), next].sort((a, b) => order(a.type) - order(b.type));
}

export function removeCondition(conditions: Condition[], type: string): Condition[] {
  return conditions.filter((c) => c.type !== type);
}

export function findCondition(status: PublishedRealmStatus | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/** Done: Ready=True; no Reconciling, no Stalled. */
export function markReady(status: PublishedRealmStatus, generation: number, reason: string, message: string, now = new Date()): PublishedRealmStatus {
  let conditions = setCondition(status.conditions ?? [], { type: READY, status: 'True', reason, message }, generation, now);
  conditions = removeCondition(removeCondition(conditions, RECONCILING), STALLED);
  return { ...status, observedGeneration: generation, conditions };
}

/** Working on it: Ready=False and Reconciling=True with the same reason; no Stalled. */
export function markReconciling(status: PublishedRealmStatus, generation: number, reason: string, message: string, now = new Date()): PublishedRealmStatus {
  let conditions = setCondition(status.conditions ?? [], { type: READY, status: 'False', reason, message }, generation, now);
  conditions = setCondition(conditions, { type: RECONCILING, status: 'True', reason, message }, generation, now);
  return { ...status, observedGeneration: generation, conditions: removeCondition(conditions, STALLED) };
}

/** Cannot progress without a person: Ready=False and Stalled=True; no Reconciling. */
export function markStalled(status: PublishedRealmStatus, generation: number, reason: string, message: string, now = new Date()): PublishedRealmStatus {
  let conditions = setCondition(status.conditions ?? [], { type: READY, status: 'False', reason, message }, generation, now);
  conditions = setCondition(conditions, { type: STALLED, status: 'True', reason, message }, generation, now);
  return { ...status, observedGeneration: generation, conditions: removeCondition(conditions, RECONCILING) };
}

/** Suspended: Ready=False with reason Suspended; neither Reconciling nor Stalled (kstatus: Current). */
export function markSuspended(status: PublishedRealmStatus, generation: number, message: string, now = new Date()): PublishedRealmStatus {
  const conditions = setCondition(status.conditions ?? [], { type: READY, status: 'False', reason: Reasons.Suspended, message }, generation, now);
  return { ...status, observedGeneration: generation, conditions: removeCondition(removeCondition(conditions, RECONCILING), STALLED) };
}

/** Sets the RealmUserRegistered condition, leaving the others as they are. */
export function markRealmUser(
  status: PublishedRealmStatus,
  generation: number,
  input: { status: 'True' | 'False'; reason: string; message: string },
  now = new Date(),
): PublishedRealmStatus {
  return { ...status, conditions: setCondition(status.conditions ?? [], { type: REALM_USER_REGISTERED, ...input }, generation, now) };
}

/** Whether the status records `@<username>:…` as registered (so it is not registered again). */
export function realmUserRecorded(status: PublishedRealmStatus | undefined, username: string): boolean {
  const condition = findCondition(status, REALM_USER_REGISTERED);
  return condition?.status === 'True' && condition.message.includes(`@${username}:`);
}

/** The summary of a status for events: what a person would want told when it changes. */
export function readySummary(status: PublishedRealmStatus | undefined): string {
  const ready = findCondition(status, READY);
  return ready ? `${ready.status}/${ready.reason}` : 'none';
}

/** In-progress reasons that get no transition Event (the publish's own Events say it). */
const QUIET_REASONS: ReadonlySet<string> = new Set([Reasons.Publishing, Reasons.RollingBack, Reasons.AwaitingAcknowledgement]);

/**
 * The Event to record for a status change, if any: when Ready's status or reason, or Stalled,
 * changed — one Event per transition, with Ready's reason and message. Warning for Stalled and
 * failures, Normal otherwise.
 */
export function transitionEvent(
  before: PublishedRealmStatus | undefined,
  after: PublishedRealmStatus | undefined,
): { type: 'Normal' | 'Warning'; reason: string; message: string } | undefined {
  const key = (s: PublishedRealmStatus | undefined) => `${readySummary(s)}/${findCondition(s, STALLED)?.reason ?? ''}`;
  if (key(before) === key(after)) return undefined;
  const ready = findCondition(after, READY);
  if (!ready || QUIET_REASONS.has(ready.reason)) return undefined;
  const warning = findCondition(after, STALLED) !== undefined || ready.reason === Reasons.PublishFailed || ready.reason === Reasons.RealmUserRegistrationFailed;
  return { type: warning ? 'Warning' : 'Normal', reason: ready.reason, message: ready.message };
}

/** `1 file`, `2 files`, `1 entry`/`2 entries` (pass the plural when it is not `<singular>s`). */
export function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

/**
 * The InvalidSpec message: the problems, and a fix that works — publishedRealmURL is immutable,
 * so a problem there is fixed by deleting and recreating the object, not by editing it.
 */
export function invalidSpecMessage(problems: string[]): string {
  const inPublishedURL = problems.some((p) => p.startsWith('spec.publishedRealmURL'));
  const elsewhere = problems.some((p) => !p.startsWith('spec.publishedRealmURL'));
  const fixes: string[] = [];
  if (elsewhere) fixes.push('edit the PublishedRealm to fix the other fields');
  if (inPublishedURL) fixes.push('publishedRealmURL cannot be changed: delete this PublishedRealm and create it again with a valid publishedRealmURL');
  const fix = fixes.join('; ');
  return `The spec is invalid: ${problems.join('; ')}. To fix: ${fix}. Nothing was published.`;
}

function order(type: string): number {
  return type === READY ? 0 : type === RECONCILING ? 1 : type === STALLED ? 2 : type === REALM_USER_REGISTERED ? 3 : 4;
}

function truncate(message: string): string {
  return message.length > 32_000 ? `${message.slice(0, 31_990)}…` : message;
}
