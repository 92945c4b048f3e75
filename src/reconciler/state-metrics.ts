/**
 * Per-object state metrics, as kube-state-metrics and CloudNativePG export them: every
 * PublishedRealm's and Realm's conditions (with when each last changed), and a PublishedRealm's
 * acknowledgement counts and published content. Kept from the informers' add/update/delete events,
 * never pushed by the reconcilers, so the values cannot drift from the cached objects and a deleted
 * object's series disappear with it.
 *
 * Why events and not a walk of the caches at scrape time: at 1,000 objects that walk rebuilt ~14,000
 * label sets per scrape (the scale bench scrapes every 100 ms), which showed in the operator's RSS
 * and CPU; an event costs the one object's series, a scrape only formats what is there.
 *
 * Cardinality: per object one `..._condition` and one `..._last_transition_timestamp_seconds`
 * series per condition type it has (Ready, and Reconciling, Stalled or RealmUserRegistered when
 * present: at most 3), plus for a PublishedRealm one info series, two replica series and up to five
 * content gauges. A reason change replaces a series (reason is a label), it does not add one.
 */
import type { Registry } from 'prom-client';
import type { PublishedRealm } from '../api/v1alpha1/published-realm-types.js';
import type { Realm } from '../api/v1alpha1/realm-types.js';
import type { InformerEventHandler } from '../runtime/informer.js';
import { KeyedGauge } from '../runtime/metrics.js';

export const STATE_METRIC_NAMES = {
  condition: 'realm_operator_resource_condition',
  lastTransition: 'realm_operator_resource_condition_last_transition_timestamp_seconds',
  publishedRealmInfo: 'realm_operator_published_realm_info',
  publishedRealmReplicas: 'realm_operator_published_realm_replicas',
  publishedRealmEpoch: 'realm_operator_published_realm_epoch',
  publishedRealmPublished: 'realm_operator_published_realm_published_timestamp_seconds',
  publishedRealmFiles: 'realm_operator_published_realm_files',
  publishedRealmBytes: 'realm_operator_published_realm_bytes',
  publishedRealmVersionsKept: 'realm_operator_published_realm_versions_kept',
  realmInfo: 'realm_operator_realm_info',
} as const;

export type StateMetricName = (typeof STATE_METRIC_NAMES)[keyof typeof STATE_METRIC_NAMES];

/** One sample: metric, labels, value. */
export interface StateSeries {
  metric: StateMetricName;
  labels: Record<string, string>;
  value: number;
}

export type ResourceKind = 'PublishedRealm' | 'Realm';

/** Where one kind's objects come from: an Informer, or anything calling the handlers as it does. */
export interface StateObjectSource<T> {
  /** Registers `handler`, first replaying every cached object as an add; returns its removal. */
  addEventHandler(handler: InformerEventHandler<T>): () => void;
}

type Conditions = NonNullable<NonNullable<PublishedRealm['status']>['conditions']>;

function seconds(timestamp: string | undefined): number | undefined {
  if (!timestamp) return undefined;
  const ms = Date.parse(timestamp);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

function conditionSeries(kind: ResourceKind, metadata: { namespace: string; name: string }, conditions: Conditions | undefined): StateSeries[] {
  const series: StateSeries[] = [];
  const object = { kind, namespace: metadata.namespace, name: metadata.name };
  for (const condition of conditions ?? []) {
    series.push({ metric: STATE_METRIC_NAMES.condition, labels: { ...object, type: condition.type, status: condition.status, reason: condition.reason ?? '' }, value: 1 });
    const since = seconds(condition.lastTransitionTime);
    if (since !== undefined) series.push({ metric: STATE_METRIC_NAMES.lastTransition, labels: { ...object, type: condition.type }, value: since });
  }
  return series;
}

/** The series a PublishedRealm contributes (pure: the object in, the samples out). */
export function publishedRealmSeries(object: PublishedRealm): StateSeries[] {
  const { namespace, name } = object.metadata;
  const series = conditionSeries('PublishedRealm', object.metadata, object.status?.conditions);
  const spec = (object.spec ?? {}) as { publishedRealmURL?: unknown };
  const status = object.status;
  series.push({
    metric: STATE_METRIC_NAMES.publishedRealmInfo,
    labels: {
      namespace,
      name,
      url: typeof spec.publishedRealmURL === 'string' ? spec.publishedRealmURL : '',
      revision: status?.publishedRevision ?? '',
      live_version: status?.liveVersion ?? '',
    },
    value: 1,
  });
  if (status?.replicas) {
    series.push({ metric: STATE_METRIC_NAMES.publishedRealmReplicas, labels: { namespace, name, state: 'acknowledged' }, value: status.replicas.acknowledged });
    series.push({ metric: STATE_METRIC_NAMES.publishedRealmReplicas, labels: { namespace, name, state: 'expected' }, value: status.replicas.expected });
  }
  if (status?.epoch !== undefined) series.push({ metric: STATE_METRIC_NAMES.publishedRealmEpoch, labels: { namespace, name }, value: status.epoch });
  const publishedAt = seconds(status?.publishedAt);
  if (publishedAt !== undefined) series.push({ metric: STATE_METRIC_NAMES.publishedRealmPublished, labels: { namespace, name }, value: publishedAt });
  if (status?.fileCount !== undefined) series.push({ metric: STATE_METRIC_NAMES.publishedRealmFiles, labels: { namespace, name }, value: status.fileCount });
  if (status?.totalBytes !== undefined) series.push({ metric: STATE_METRIC_NAMES.publishedRealmBytes, labels: { namespace, name }, value: status.totalBytes });
  if (status?.versions) series.push({ metric: STATE_METRIC_NAMES.publishedRealmVersionsKept, labels: { namespace, name }, value: status.versions.length });
  return series;
}

/** The series a Realm contributes. */
export function realmSeries(object: Realm): StateSeries[] {
  const { namespace, name } = object.metadata;
  const series = conditionSeries('Realm', object.metadata, object.status?.conditions);
  series.push({
    metric: STATE_METRIC_NAMES.realmInfo,
    labels: { namespace, name, url: object.status?.url ?? '', adopted: object.status?.adopted ? 'true' : 'false' },
    value: 1,
  });
  return series;
}

/** Each state metric's help text and label names. */
export const STATE_METRICS: Record<StateMetricName, { help: string; labels: readonly string[] }> = {
  realm_operator_resource_condition: {
    help: 'A PublishedRealm\'s or Realm\'s condition: 1 for its current status and reason (one series per object and condition type)',
    labels: ['kind', 'namespace', 'name', 'type', 'status', 'reason'],
  },
  realm_operator_resource_condition_last_transition_timestamp_seconds: {
    help: 'When a PublishedRealm\'s or Realm\'s condition last changed status (lastTransitionTime), in Unix seconds',
    labels: ['kind', 'namespace', 'name', 'type'],
  },
  realm_operator_published_realm_info: {
    help: 'A PublishedRealm\'s URL (spec.publishedRealmURL), last published revision and the content version served now (status.liveVersion); always 1',
    labels: ['namespace', 'name', 'url', 'revision', 'live_version'],
  },
  realm_operator_published_realm_replicas: {
    help: 'Live realm-server replicas that acknowledged the latest publish of a PublishedRealm, and those expected to (status.replicas)',
    labels: ['namespace', 'name', 'state'],
  },
  realm_operator_published_realm_epoch: { help: 'A PublishedRealm\'s invalidation epoch after its last publish (status.epoch)', labels: ['namespace', 'name'] },
  realm_operator_published_realm_published_timestamp_seconds: { help: 'When a PublishedRealm\'s content was last published (status.publishedAt), in Unix seconds', labels: ['namespace', 'name'] },
  realm_operator_published_realm_files: { help: 'Files in a PublishedRealm\'s published content (status.fileCount)', labels: ['namespace', 'name'] },
  realm_operator_published_realm_bytes: { help: 'Bytes in a PublishedRealm\'s published content (status.totalBytes)', labels: ['namespace', 'name'] },
  realm_operator_published_realm_versions_kept: { help: 'Published versions a PublishedRealm keeps for rollback (status.versions)', labels: ['namespace', 'name'] },
  realm_operator_realm_info: { help: 'A Realm\'s URL (status.url) and whether it was adopted; always 1', labels: ['namespace', 'name', 'url', 'adopted'] },
};

export interface StateMetricsSources {
  publishedRealms: StateObjectSource<PublishedRealm>;
  /** Absent when the Realm CRD is not installed (the Realm controller is off). */
  realms?: StateObjectSource<Realm> | undefined;
}

/** A sample's identity within its metric: the label values in the metric's label order. */
function seriesKey(series: StateSeries): string {
  let key = '';
  for (const label of STATE_METRICS[series.metric].labels) key += `${series.labels[label] ?? ''}\u0000`;
  return key;
}

/**
 * Registers the state metrics on `registry` and keeps them from the sources' events; returns a
 * function that stops listening (the series stay as they were). Every operator replica runs the
 * informers, so standbys report the same series as the leader: aggregate with
 * `max by (kind, namespace, name, …)` as the alerts do.
 */
export function registerStateMetrics(registry: Registry, sources: StateMetricsSources): () => void {
  // Events only note which objects changed (and their latest state); the series are brought up to
  // date when read, so a burst of status writes with no scrape in between (1,000 publishes) costs a
  // map entry per event, and a scrape costs the objects changed since the previous one.
  const changed = new Map<string, (() => StateSeries[]) | undefined>();
  const reported = new Map<string, Array<{ gauge: KeyedGauge<string>; key: string }>>();
  const update = () => {
    for (const [objectKey, seriesNow] of changed) report(objectKey, seriesNow?.() ?? []);
    changed.clear();
  };
  const gauges = new Map<StateMetricName, KeyedGauge<string>>();
  for (const metric of Object.values(STATE_METRIC_NAMES)) {
    gauges.set(metric, new KeyedGauge({ name: metric, help: STATE_METRICS[metric].help, labelNames: [...STATE_METRICS[metric].labels], registers: [registry] }, update));
  }
  // Which series each object has now, so an update touches only what changed and a delete removes
  // exactly what the object had (no series left behind, nothing kept for it): `reported` above.
  const report = (objectKey: string, next: StateSeries[]): void => {
    const now = next.map((series) => ({ gauge: gauges.get(series.metric)!, key: seriesKey(series), series }));
    for (const old of reported.get(objectKey) ?? []) {
      if (!now.some(({ gauge, key }) => gauge === old.gauge && key === old.key)) old.gauge.drop(old.key);
    }
    for (const { gauge, key, series } of now) gauge.put(key, series.labels, series.value);
    if (now.length > 0) reported.set(objectKey, now.map(({ gauge, key }) => ({ gauge, key })));
    else reported.delete(objectKey);
  };
  const follow = <T extends { metadata: { namespace: string; name: string } }>(kind: ResourceKind, source: StateObjectSource<T>, seriesOf: (object: T) => StateSeries[]) =>
    source.addEventHandler({
      onAdd: (object) => changed.set(`${kind}/${object.metadata.namespace}/${object.metadata.name}`, () => seriesOf(object)),
      onUpdate: (_old, object) => changed.set(`${kind}/${object.metadata.namespace}/${object.metadata.name}`, () => seriesOf(object)),
      onDelete: (object) => {
        const objectKey = `${kind}/${object.metadata.namespace}/${object.metadata.name}`;
        // Never scraped: nothing to remove, and nothing kept (no scrape must not mean a leak).
        if (reported.has(objectKey)) changed.set(objectKey, undefined);
        else changed.delete(objectKey);
      },
    });
  const stops = [follow('PublishedRealm', sources.publishedRealms, publishedRealmSeries)];
  if (sources.realms) stops.push(follow('Realm', sources.realms, realmSeries));
  return () => {
    for (const stop of stops) stop();
  };
}
