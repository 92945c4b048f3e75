/**
 * The events.k8s.io/v1 recorder against the run's real API server: the fields `kubectl describe`
 * reads, series aggregation (20 identical Events → one object with series.count 20), and the
 * per-object rate limit.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { EventRecorder, type EventInput, type ObjectReference } from '../../src/runtime/event-recorder.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { kubectl, testKubeConfig } from '../support/kube.js';

const kube = testKubeConfig();
const namespace = `rt-events-${randomBytes(3).toString('hex')}`;
const logger = pino({ level: process.env.RUNTIME_TEST_LOG ?? 'silent' });
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

interface EventV1 {
  metadata: { name: string };
  eventTime: string;
  reportingController: string;
  reportingInstance: string;
  action: string;
  reason: string;
  note: string;
  type: string;
  regarding: ObjectReference;
  series?: { count: number; lastObservedTime: string };
}

async function configMap(name: string): Promise<ObjectReference> {
  const cm = await kubeRequest<{ metadata: { uid: string; resourceVersion: string } }>(kube, {
    method: 'POST',
    path: `/api/v1/namespaces/${namespace}/configmaps`,
    body: { metadata: { name } },
  });
  return { apiVersion: 'v1', kind: 'ConfigMap', namespace, name, uid: cm.metadata.uid, resourceVersion: cm.metadata.resourceVersion };
}

async function eventsAbout(name: string): Promise<EventV1[]> {
  const list = await kubeRequest<{ items: EventV1[] }>(kube, { path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events` });
  return list.items.filter((e) => e.regarding.name === name).sort((a, b) => a.eventTime.localeCompare(b.eventTime));
}

const recorderOptions = { kubeConfig: kube, reportingController: 'realm-operator.dev/test', reportingInstance: 'test-pod-0', logger };

beforeAll(async () => {
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
});

describe('EventRecorder (real API server)', () => {
  test('20 identical Events are one events.k8s.io object with series.count 20; describe shows "(x20 over …)"', async () => {
    const regarding = await configMap('aggregated');
    const recorder = new EventRecorder(recorderOptions);
    const event: EventInput = { regarding, type: 'Warning', reason: 'SourceRealmUnavailable', action: 'Publish', note: 'source realm http://x/a/ is not registered' };
    // As a hot loop would: each occurrence from a newer resourceVersion of the object.
    await Promise.all(Array.from({ length: 20 }, (_, i) => recorder.record({ ...event, regarding: { ...regarding, resourceVersion: String(1000 + i) } })));
    await recorder.idle();

    const events = await eventsAbout('aggregated');
    expect(events).toHaveLength(1);
    const [recorded] = events as [EventV1];
    expect(recorded).toMatchObject({
      reportingController: 'realm-operator.dev/test',
      reportingInstance: 'test-pod-0',
      action: 'Publish',
      reason: 'SourceRealmUnavailable',
      note: event.note,
      type: 'Warning',
      regarding: { kind: 'ConfigMap', name: 'aggregated', namespace, uid: regarding.uid },
      series: { count: 20 },
    });
    expect(recorded.eventTime).toMatch(MICRO_TIME);
    expect(recorded.series!.lastObservedTime).toMatch(MICRO_TIME);
    expect(recorded.series!.lastObservedTime >= recorded.eventTime).toBe(true);
    expect(recorded.metadata.name).toMatch(/^aggregated\.[0-9a-f]+$/);

    const describe = await kubectl(['describe', 'configmap', 'aggregated', '-n', namespace]);
    expect(describe.code).toBe(0);
    expect(describe.stdout).toMatch(/Warning\s+SourceRealmUnavailable\s+.*\(x20 over .*\)\s+realm-operator\.dev\/test(, test-pod-0)?\s+source realm http:\/\/x\/a\/ is not registered/);

    // Something different is a new Event, and the core/v1 view (kubectl get events) agrees.
    await recorder.record({ ...event, type: 'Normal', reason: 'ContentPublished', note: 'Published 1 file' });
    const again = await eventsAbout('aggregated');
    expect(again.map((e) => [e.reason, e.series?.count ?? 1])).toEqual([
      ['SourceRealmUnavailable', 20],
      ['ContentPublished', 1],
    ]);
    const core = await kubeRequest<{ items: Array<{ reason: string; message: string; involvedObject: { name: string } }> }>(kube, {
      path: `/api/v1/namespaces/${namespace}/events`,
      query: { fieldSelector: 'involvedObject.name=aggregated' },
    });
    expect(core.items.map((e) => e.reason).sort()).toEqual(['ContentPublished', 'SourceRealmUnavailable']);
  });

  test('the per-object rate limit drops new Events beyond the burst and holds series bumps until close()', async () => {
    const regarding = await configMap('limited');
    const recorder = new EventRecorder({ ...recorderOptions, rateLimit: { burst: 3, refillEveryMs: 60 * 60_000 } });
    const base: EventInput = { regarding, type: 'Normal', reason: 'Tick', action: 'Reconcile', note: 'same' };
    await recorder.record(base); // token 1: created
    await recorder.record(base); // token 2: series.count 2 written
    await recorder.record(base); // token 3: series.count 3 written
    await recorder.record(base); // no token: held
    await recorder.record(base); // no token: held
    await recorder.record({ ...base, note: 'different' }); // no token: dropped, as client-go does
    let events = await eventsAbout('limited');
    expect(events.map((e) => [e.note, e.series?.count])).toEqual([['same', 3]]);

    // Another object has its own bucket.
    const other = await configMap('unlimited');
    await recorder.record({ ...base, regarding: other });
    expect(await eventsAbout('unlimited')).toHaveLength(1);

    await recorder.close();
    events = await eventsAbout('limited');
    expect(events.map((e) => [e.note, e.series?.count])).toEqual([['same', 5]]);
  });

  test('a series whose Event was deleted is created again with its count', async () => {
    const regarding = await configMap('recreated');
    const recorder = new EventRecorder(recorderOptions);
    const event: EventInput = { regarding, type: 'Normal', reason: 'Tick', action: 'Reconcile', note: 'n' };
    await recorder.record(event);
    const [first] = await eventsAbout('recreated');
    await kubeRequest(kube, { method: 'DELETE', path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events/${first!.metadata.name}` });
    await recorder.record(event);
    const events = await eventsAbout('recreated');
    expect(events).toHaveLength(1);
    expect(events[0]!.metadata.name).not.toBe(first!.metadata.name);
    expect(events[0]!.series?.count).toBe(2);
  });
});
