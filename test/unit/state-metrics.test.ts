/**
 * The state metrics' mapping from objects to series, and the series kept from informer events: one
 * series per condition with its status and reason, the transition time in seconds, acknowledgement
 * counts, and nothing left behind for an object that left the cache.
 */
import { expect, test } from '@jest/globals';
import { Registry } from 'prom-client';
import type { PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import type { Realm } from '../../src/api/v1alpha1/realm-types.js';
import { publishedRealmSeries, realmSeries, registerStateMetrics, STATE_METRICS } from '../../src/reconciler/state-metrics.js';
import type { InformerEventHandler } from '../../src/runtime/informer.js';
import { prometheusExposition } from '../../src/runtime/metrics.js';

const awaiting: PublishedRealm = {
  apiVersion: 'realm-operator.dev/v1alpha1',
  kind: 'PublishedRealm',
  metadata: { name: 'site', namespace: 'boxel' },
  spec: { sourceRealmURL: 'https://app.example/u/src/', publishedRealmURL: 'https://site.example/', revision: 2 },
  status: {
    conditions: [
      { type: 'Ready', status: 'False', reason: 'AwaitingAcknowledgement', message: 'waiting', lastTransitionTime: '2026-01-01T00:00:00Z' },
      { type: 'Reconciling', status: 'True', reason: 'AwaitingAcknowledgement', message: 'waiting', lastTransitionTime: '2026-01-01T00:00:10Z' },
    ],
    publishedRevision: '2',
    publishedAt: '2026-01-01T00:00:05.500Z',
    epoch: 7,
    fileCount: 3,
    totalBytes: 1234,
    replicas: { acknowledged: 1, expected: 3, missing: ['r-1', 'r-2'], mode: 'Acknowledged' },
    liveVersion: 'v7',
    versions: [
      { version: 'v7', epoch: 7, digest: 'sha256:b', fileCount: 3, totalBytes: 1234, publishedAt: '2026-01-01T00:00:05.500Z', revision: '2', live: true },
      { version: 'v6', epoch: 6, digest: 'sha256:a', fileCount: 2, totalBytes: 1000, publishedAt: '2025-12-31T00:00:00Z', revision: '1', live: false },
    ],
  },
};

const stalledRealm: Realm = {
  apiVersion: 'realm-operator.dev/v1alpha1',
  kind: 'Realm',
  metadata: { name: 'src', namespace: 'team' },
  spec: {},
  status: {
    conditions: [
      { type: 'Ready', status: 'False', reason: 'RealmMissing', message: 'gone', lastTransitionTime: '2026-01-02T00:00:00Z' },
      { type: 'Stalled', status: 'True', reason: 'RealmMissing', message: 'gone', lastTransitionTime: '2026-01-02T00:00:00Z' },
    ],
    url: 'https://app.example/u/src/',
  },
};

test('a PublishedRealm awaiting acknowledgements: its conditions, when they changed, its replicas and content', () => {
  const object = { kind: 'PublishedRealm', namespace: 'boxel', name: 'site' };
  expect(publishedRealmSeries(awaiting)).toEqual([
    { metric: 'realm_operator_resource_condition', labels: { ...object, type: 'Ready', status: 'False', reason: 'AwaitingAcknowledgement' }, value: 1 },
    { metric: 'realm_operator_resource_condition_last_transition_timestamp_seconds', labels: { ...object, type: 'Ready' }, value: 1767225600 },
    { metric: 'realm_operator_resource_condition', labels: { ...object, type: 'Reconciling', status: 'True', reason: 'AwaitingAcknowledgement' }, value: 1 },
    { metric: 'realm_operator_resource_condition_last_transition_timestamp_seconds', labels: { ...object, type: 'Reconciling' }, value: 1767225610 },
    { metric: 'realm_operator_published_realm_info', labels: { namespace: 'boxel', name: 'site', url: 'https://site.example/', revision: '2', live_version: 'v7' }, value: 1 },
    { metric: 'realm_operator_published_realm_replicas', labels: { namespace: 'boxel', name: 'site', state: 'acknowledged' }, value: 1 },
    { metric: 'realm_operator_published_realm_replicas', labels: { namespace: 'boxel', name: 'site', state: 'expected' }, value: 3 },
    { metric: 'realm_operator_published_realm_epoch', labels: { namespace: 'boxel', name: 'site' }, value: 7 },
    { metric: 'realm_operator_published_realm_published_timestamp_seconds', labels: { namespace: 'boxel', name: 'site' }, value: 1767225605.5 },
    { metric: 'realm_operator_published_realm_files', labels: { namespace: 'boxel', name: 'site' }, value: 3 },
    { metric: 'realm_operator_published_realm_bytes', labels: { namespace: 'boxel', name: 'site' }, value: 1234 },
    { metric: 'realm_operator_published_realm_versions_kept', labels: { namespace: 'boxel', name: 'site' }, value: 2 },
  ]);
});

test('a new PublishedRealm without status gives only its info series (no condition, no replica counts)', () => {
  const fresh: PublishedRealm = { ...awaiting, metadata: { name: 'new', namespace: 'boxel' }, spec: { publishedRealmURL: 42 } };
  delete fresh.status;
  expect(publishedRealmSeries(fresh)).toEqual([{ metric: 'realm_operator_published_realm_info', labels: { namespace: 'boxel', name: 'new', url: '', revision: '', live_version: '' }, value: 1 }]);
});

test('a Stalled Realm: kind Realm, the reason as a label, its URL in the info series', () => {
  const object = { kind: 'Realm', namespace: 'team', name: 'src' };
  expect(realmSeries(stalledRealm)).toEqual([
    { metric: 'realm_operator_resource_condition', labels: { ...object, type: 'Ready', status: 'False', reason: 'RealmMissing' }, value: 1 },
    { metric: 'realm_operator_resource_condition_last_transition_timestamp_seconds', labels: { ...object, type: 'Ready' }, value: 1767312000 },
    { metric: 'realm_operator_resource_condition', labels: { ...object, type: 'Stalled', status: 'True', reason: 'RealmMissing' }, value: 1 },
    { metric: 'realm_operator_resource_condition_last_transition_timestamp_seconds', labels: { ...object, type: 'Stalled' }, value: 1767312000 },
    { metric: 'realm_operator_realm_info', labels: { namespace: 'team', name: 'src', url: 'https://app.example/u/src/', adopted: 'false' }, value: 1 },
  ]);
});

test('an unparsable lastTransitionTime gives no timestamp series rather than NaN', () => {
  const odd: Realm = { ...stalledRealm, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'Created', message: '', lastTransitionTime: 'yesterday' }] } };
  expect(realmSeries(odd).map((s) => s.metric)).toEqual(['realm_operator_resource_condition', 'realm_operator_realm_info']);
});

/** Calls handlers as an Informer does (a late handler first sees every cached object as an add). */
class FakeSource<T extends { metadata: { namespace: string; name: string } }> {
  readonly cache = new Map<string, T>();
  private readonly handlers = new Set<InformerEventHandler<T>>();
  addEventHandler(handler: InformerEventHandler<T>): () => void {
    this.handlers.add(handler);
    for (const object of this.cache.values()) handler.onAdd?.(object);
    return () => this.handlers.delete(handler);
  }
  put(object: T): void {
    const key = `${object.metadata.namespace}/${object.metadata.name}`;
    const old = this.cache.get(key);
    this.cache.set(key, object);
    for (const handler of this.handlers) {
      if (old) handler.onUpdate?.(old, object);
      else handler.onAdd?.(object);
    }
  }
  remove(object: T, finalStateUnknown = false): void {
    this.cache.delete(`${object.metadata.namespace}/${object.metadata.name}`);
    for (const handler of this.handlers) handler.onDelete?.(object, finalStateUnknown);
  }
}

/** A registry with the state metrics following a fake PublishedRealm source (no Realm source). */
function publishedOnly() {
  const registry = new Registry();
  const published = new FakeSource<PublishedRealm>();
  const stop = registerStateMetrics(registry, { publishedRealms: published });
  return { registry, published, stop };
}

const samples = (text: string) => text.split('\n').filter((line) => line.startsWith('realm_operator_'));

test('the series follow the objects\' events: a changed reason replaces its series, a removed object leaves none', async () => {
  const published = new FakeSource<PublishedRealm>();
  const realms = new FakeSource<Realm>();
  realms.put(stalledRealm);
  const registry = new Registry();
  registerStateMetrics(registry, { publishedRealms: published, realms });
  published.put(awaiting);
  const first = await registry.metrics();
  expect(first).toContain('realm_operator_resource_condition{kind="PublishedRealm",namespace="boxel",name="site",type="Reconciling",status="True",reason="AwaitingAcknowledgement"} 1');
  expect(first).toContain('realm_operator_resource_condition{kind="Realm",namespace="team",name="src",type="Stalled",status="True",reason="RealmMissing"} 1');
  expect(first).toContain('realm_operator_published_realm_replicas{namespace="boxel",name="site",state="expected"} 3');

  published.put({
    ...awaiting,
    status: { ...awaiting.status, conditions: [{ type: 'Ready', status: 'True', reason: 'Published', message: 'ok', lastTransitionTime: '2026-01-01T00:01:00Z' }] },
  });
  realms.remove(stalledRealm);
  const second = await registry.metrics();
  expect(second).toContain('realm_operator_resource_condition{kind="PublishedRealm",namespace="boxel",name="site",type="Ready",status="True",reason="Published"} 1');
  expect(second).toContain('realm_operator_resource_condition_last_transition_timestamp_seconds{kind="PublishedRealm",namespace="boxel",name="site",type="Ready"} 1767225660');
  expect(second).not.toMatch(/reason="AwaitingAcknowledgement"/);
  expect(second).not.toMatch(/type="Reconciling"/);
  expect(second).not.toMatch(/kind="Realm"/);
  expect(second).not.toMatch(/realm_operator_realm_info\{/);
  // Families stay declared with no samples, so the metric names are always in a scrape.
  expect(second).toMatch(/^# TYPE realm_operator_realm_info gauge$/m);
});

test('the scrape holds exactly the series the cached objects give, after any sequence of adds, updates and deletes', async () => {
  const { registry, published } = publishedOnly();
  const variant = (i: number, step: number): PublishedRealm => ({
    ...awaiting,
    metadata: { namespace: `ns-${i % 3}`, name: `site-${i}` },
    status: {
      ...awaiting.status,
      conditions: step % 2 === 0 ? awaiting.status!.conditions! : [{ type: 'Ready', status: 'True', reason: 'Published', message: 'ok', lastTransitionTime: `2026-01-01T00:0${step}:00Z` }],
      epoch: step,
      ...(step === 3 ? { replicas: undefined, versions: undefined } : {}),
    },
  });
  for (let step = 0; step < 5; step++) {
    for (let i = 0; i < 30; i++) if ((i + step) % 4 !== 0) published.put(variant(i, step));
    for (let i = 0; i < 30; i++) if ((i * 7 + step) % 5 === 0 && published.cache.has(`ns-${i % 3}/site-${i}`)) published.remove(variant(i, step), step === 4);
    const expected = [...published.cache.values()].flatMap(publishedRealmSeries).map((s) => `${s.metric}{${Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(',')}} ${s.value}`);
    const text = await registry.metrics();
    expect(samples(text).sort()).toEqual(expected.sort());
    // The kept text the endpoint serves is what the registry would format now.
    expect(await prometheusExposition(registry)).toBe(text);
  }
});

test('deleting every object leaves no series behind (1,000 objects added then removed)', async () => {
  const { registry, published } = publishedOnly();
  const objects = Array.from({ length: 1000 }, (_, i): PublishedRealm => ({ ...awaiting, metadata: { namespace: 'boxel', name: `site-${i}` } }));
  for (const object of objects) published.put(object);
  // Objects added and deleted between two scrapes never show.
  const transient = Array.from({ length: 100 }, (_, i): PublishedRealm => ({ ...awaiting, metadata: { namespace: 'boxel', name: `transient-${i}` } }));
  for (const object of transient) published.put(object);
  for (const object of transient) published.remove(object);
  expect(samples(await registry.metrics())).toHaveLength(1000 * publishedRealmSeries(awaiting).length);
  for (const object of objects) published.remove(object);
  expect(samples(await registry.metrics())).toEqual([]);
  const held = (await registry.getMetricsAsJSON()).filter((metric) => metric.name.startsWith('realm_operator_')).map((metric) => metric.values.length);
  expect(held).toEqual(Object.keys(STATE_METRICS).map(() => 0));
});

test('without the Realm controller (CRD not installed) only PublishedRealms are reported', async () => {
  const { registry, published } = publishedOnly();
  published.put(awaiting);
  const text = await registry.metrics();
  expect(text).toContain('kind="PublishedRealm"');
  expect(text).not.toContain('kind="Realm"');
});

test('after the returned stop, events no longer change the series', async () => {
  const { registry, published, stop } = publishedOnly();
  published.put(awaiting);
  stop();
  published.put({ ...awaiting, metadata: { namespace: 'boxel', name: 'other' } });
  const text = await registry.metrics();
  expect(text).toContain('name="site"');
  expect(text).not.toContain('name="other"');
});

test('the kept text escapes label values as the registry does (quotes, backslashes, newlines in a URL)', async () => {
  const { registry, published } = publishedOnly();
  published.put({ ...awaiting, spec: { ...(awaiting.spec as object), publishedRealmURL: 'https://odd.example/"a"\\b\nc' } });
  const text = await prometheusExposition(registry);
  expect(text).toContain('url="https://odd.example/\\"a\\"\\\\b\\nc"');
  expect(text).toBe(await registry.metrics());
});
