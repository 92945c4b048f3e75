/**
 * Status conditions for PublishedRealm, following kstatus: `Ready` is always present;
 * `Reconciling` and `Stalled` are present only while True (so Flux, Argo CD and
 * `kubectl wait --for=condition=Ready` read them correctly). Pure functions over a status copy.
 */
import type { Condition, PublishedRealmStatus } from '../../api/v1alpha1/published-realm-types.js';

export const READY = 'Ready';
export const RECONCILING = 'Reconciling';
export const STALLED = 'Stalled';

/** Reasons, CamelCase, stable: alerting and people key on them. */
export const Reasons = {
  Published: 'Published',
  PublishedNotifyOnly: 'PublishedNotifyOnly',
  Publishing: 'Publishing',
  PublishFailed: 'PublishFailed',
  AwaitingAcknowledgement: 'AwaitingAcknowledgement',
  InvalidSpec: 'InvalidSpec',
  SourceRealmUnavailable: 'SourceRealmUnavailable',
  URLAlreadyPublished: 'URLAlreadyPublished',
  ReindexFailed: 'ReindexFailed',
} as const;

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

/** The summary of a status for events: what a person would want told when it changes. */
export function readySummary(status: PublishedRealmStatus | undefined): string {
  const ready = findCondition(status, READY);
  return ready ? `${ready.status}/${ready.reason}` : 'none';
}

function order(type: string): number {
  return type === READY ? 0 : type === RECONCILING ? 1 : type === STALLED ? 2 : 3;
}

function truncate(message: string): string {
  return message.length > 32_000 ? `${message.slice(0, 31_990)}…` : message;
}
