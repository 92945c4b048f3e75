/**
 * The state metrics' mapping from objects to series, and the collector's scrape: one series per
 * condition with its status and reason, the transition time in seconds, acknowledgement counts,
 * and nothing left behind for an object that left the cache.
 */
import { expect, test } from '@jest/globals';
import { Registry } from 'prom-client';
import type { PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import type { Realm } from '../../src/api/v1alpha1/realm-types.js';
import { publishedRealmSeries, realmSeries, registerStateMetrics } from '../../src/reconciler/state-metrics.js';

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

test('the collector reads the caches at each scrape: a changed reason replaces its series, a removed object leaves none', async () => {
  const published = [awaiting];
  const realms = [stalledRealm];
  const registry = new Registry();
  registerStateMetrics(registry, { publishedRealms: { list: () => published }, realms: { list: () => realms } });
  const first = await registry.metrics();
  expect(first).toContain('realm_operator_resource_condition{kind="PublishedRealm",namespace="boxel",name="site",type="Reconciling",status="True",reason="AwaitingAcknowledgement"} 1');
  expect(first).toContain('realm_operator_resource_condition{kind="Realm",namespace="team",name="src",type="Stalled",status="True",reason="RealmMissing"} 1');
  expect(first).toContain('realm_operator_published_realm_replicas{namespace="boxel",name="site",state="expected"} 3');

  published[0] = {
    ...awaiting,
    status: { ...awaiting.status, conditions: [{ type: 'Ready', status: 'True', reason: 'Published', message: 'ok', lastTransitionTime: '2026-01-01T00:01:00Z' }] },
  };
  realms.length = 0;
  const second = await registry.metrics();
  expect(second).toContain('realm_operator_resource_condition{kind="PublishedRealm",namespace="boxel",name="site",type="Ready",status="True",reason="Published"} 1');
  expect(second).not.toMatch(/reason="AwaitingAcknowledgement"/);
  expect(second).not.toMatch(/type="Reconciling"/);
  expect(second).not.toMatch(/kind="Realm"/);
  expect(second).not.toMatch(/realm_operator_realm_info\{/);
  // Families stay declared with no samples, so the metric names are always in a scrape.
  expect(second).toMatch(/^# TYPE realm_operator_realm_info gauge$/m);
});

test('without the Realm controller (CRD not installed) only PublishedRealms are reported', async () => {
  const registry = new Registry();
  registerStateMetrics(registry, { publishedRealms: { list: () => [awaiting] } });
  const text = await registry.metrics();
  expect(text).toContain('kind="PublishedRealm"');
  expect(text).not.toContain('kind="Realm"');
});

test('one pass over the caches per scrape, whatever the number of state metrics (a scrape every 100 ms of 1,000 objects must not walk them once per gauge)', async () => {
  let lists = 0;
  const registry = new Registry();
  registerStateMetrics(registry, {
    publishedRealms: {
      list: () => {
        lists += 1;
        return [awaiting];
      },
    },
  });
  await registry.metrics();
  expect(lists).toBe(1);
  await registry.metrics();
  expect(lists).toBe(2);
});
