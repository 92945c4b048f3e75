/**
 * The per-object state metrics against the run's real kube-apiserver: the runtime's informers
 * watch PublishedRealms and Realms whose status this test writes (through the status subresource,
 * as the operator does), and a scrape of the registry reflects each object's conditions and
 * acknowledgements, follows their changes, and drops an object once it is deleted.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { REALM_PLURAL, type Realm } from '../../src/api/v1alpha1/realm-types.js';
import { registerStateMetrics } from '../../src/reconciler/state-metrics.js';
import { Informer } from '../../src/runtime/informer.js';
import { installCRD, must } from '../support/e2e.js';
import { kubectl, testKubeConfig } from '../support/kube.js';

const namespace = `state-metrics-${randomBytes(3).toString('hex')}`;
const REALM_CRD_FILE = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${REALM_PLURAL}.yaml`);
const logger = pino({ level: 'silent' });
const registry = new Registry();
const abort = new AbortController();
const running: Promise<void>[] = [];

type Cached<T> = T & { metadata: { name: string; namespace: string } };

async function eventually(check: () => Promise<boolean>, what: () => string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const scrape = () => registry.metrics();

/** Waits until the scrape holds every line of `present` and none of `absent`. */
async function scrapeShows(present: string[], absent: RegExp[] = []): Promise<string> {
  let text = '';
  await eventually(
    async () => {
      text = await scrape();
      return present.every((line) => text.split('\n').includes(line)) && absent.every((pattern) => !pattern.test(text));
    },
    () => `a scrape with ${JSON.stringify(present)} and without ${absent.join(', ')}; last scrape:\n${text.split('\n').filter((l) => l.startsWith('realm_operator_')).join('\n')}`,
  );
  return text;
}

function condition(type: string, status: 'True' | 'False', reason: string, lastTransitionTime: string) {
  return { type, status, reason, message: `${type} ${reason}`, lastTransitionTime };
}

async function writeStatus(plural: string, name: string, status: Record<string, unknown>): Promise<void> {
  await must(['patch', `${plural}.${GROUP}`, name, '-n', namespace, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
}

beforeAll(async () => {
  await installCRD();
  await must(['apply', '--server-side', '-f', REALM_CRD_FILE]);
  await must(['wait', '--for=condition=Established', `crd/${REALM_PLURAL}.${GROUP}`, '--timeout=30s']);
  await must(['create', 'namespace', namespace]);
  const kubeConfig = testKubeConfig();
  const publishedRealms = new Informer<Cached<PublishedRealm>>({ kubeConfig, resource: { group: GROUP, version: VERSION, plural: PLURAL }, namespace, name: PLURAL, logger, metricsRegistry: registry });
  const realms = new Informer<Cached<Realm>>({ kubeConfig, resource: { group: GROUP, version: VERSION, plural: REALM_PLURAL }, namespace, name: REALM_PLURAL, logger, metricsRegistry: registry });
  registerStateMetrics(registry, { publishedRealms, realms });
  running.push(publishedRealms.start(abort.signal), realms.start(abort.signal));
  await Promise.all([publishedRealms.waitForSync(), realms.waitForSync()]);
}, 60_000);

afterAll(async () => {
  abort.abort();
  await Promise.allSettled(running);
  await kubectl(['delete', 'namespace', namespace, '--wait=false']);
});

test('a PublishedRealm\'s conditions and acknowledgements are in the scrape, follow its status and leave with it', async () => {
  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'PublishedRealm',
    metadata: { name: 'site', namespace },
    spec: { sourceRealmURL: 'http://localhost:4201/u/src/', publishedRealmURL: 'http://site.localhost/', revision: 1 },
  }));
  const object = `kind="PublishedRealm",namespace="${namespace}",name="site"`;
  // No status yet: the object is known (info series) but has no condition series.
  await scrapeShows([`realm_operator_published_realm_info{namespace="${namespace}",name="site",url="http://site.localhost/",revision="",live_version=""} 1`], [new RegExp(`realm_operator_resource_condition\\{${object}`)]);

  await writeStatus(PLURAL, 'site', {
    conditions: [condition('Ready', 'False', 'AwaitingAcknowledgement', '2026-03-01T10:00:00Z'), condition('Reconciling', 'True', 'AwaitingAcknowledgement', '2026-03-01T10:00:00Z')],
    publishedRevision: '1',
    epoch: 4,
    replicas: { acknowledged: 1, expected: 2, missing: ['replica-b'], mode: 'Acknowledged' },
  });
  await scrapeShows([
    `realm_operator_resource_condition{${object},type="Reconciling",status="True",reason="AwaitingAcknowledgement"} 1`,
    `realm_operator_resource_condition_last_transition_timestamp_seconds{${object},type="Reconciling"} 1772359200`,
    `realm_operator_published_realm_replicas{namespace="${namespace}",name="site",state="acknowledged"} 1`,
    `realm_operator_published_realm_replicas{namespace="${namespace}",name="site",state="expected"} 2`,
    `realm_operator_published_realm_epoch{namespace="${namespace}",name="site"} 4`,
  ]);

  // Every replica acknowledged: Ready, and the Reconciling series is gone (not left at its old value).
  await writeStatus(PLURAL, 'site', {
    conditions: [condition('Ready', 'True', 'Published', '2026-03-01T10:00:05Z')],
    replicas: { acknowledged: 2, expected: 2, mode: 'Acknowledged' },
  });
  await scrapeShows(
    [`realm_operator_resource_condition{${object},type="Ready",status="True",reason="Published"} 1`, `realm_operator_published_realm_replicas{namespace="${namespace}",name="site",state="acknowledged"} 2`],
    [new RegExp(`\\{${object},type="Reconciling"`), /reason="AwaitingAcknowledgement"/],
  );

  await must(['delete', `${PLURAL}.${GROUP}`, 'site', '-n', namespace, '--wait=true']);
  await scrapeShows([], [new RegExp(`namespace="${namespace}",name="site"`)]);
});

test('a Stalled Realm is reported with kind Realm and its reason, and disappears once deleted', async () => {
  await must(['apply', '-f', '-'], JSON.stringify({ apiVersion: `${GROUP}/${VERSION}`, kind: 'Realm', metadata: { name: 'src', namespace }, spec: { owner: '@alice:boxel.ai', endpoint: 'notes' } }));
  await writeStatus(REALM_PLURAL, 'src', {
    conditions: [condition('Ready', 'False', 'RealmMissing', '2026-03-02T00:00:00Z'), condition('Stalled', 'True', 'RealmMissing', '2026-03-02T00:00:00Z')],
    url: 'http://localhost:4201/alice/notes/',
  });
  const object = `kind="Realm",namespace="${namespace}",name="src"`;
  await scrapeShows([
    `realm_operator_resource_condition{${object},type="Stalled",status="True",reason="RealmMissing"} 1`,
    `realm_operator_resource_condition_last_transition_timestamp_seconds{${object},type="Stalled"} 1772409600`,
    `realm_operator_realm_info{namespace="${namespace}",name="src",url="http://localhost:4201/alice/notes/",adopted="false"} 1`,
  ]);
  await must(['delete', `${REALM_PLURAL}.${GROUP}`, 'src', '-n', namespace, '--wait=true']);
  await scrapeShows([], [new RegExp(`namespace="${namespace}",name="src"`)]);
});
