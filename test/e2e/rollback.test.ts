/**
 * Rollback under readers, end to end: the operator as a process, 3 realm-server replicas as
 * processes with a reader each reading every file continuously, a real kube-apiserver and
 * PostgreSQL (the consistency harness, test/consistency). Revision 1 is published (version V1),
 * then revision 0's content again (live, V2); `spec.rollbackTo: V1` must then be served by every
 * replica once the object is Ready `RolledBack`: a read that starts after the driver saw that Ready
 * and returns revision 0 is a stale read. The content numbers are chosen so the rolled-back content
 * is the higher revision, which is what the checker's "revision >= required" judges.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { ConsistencyChecker, now } from '../consistency/checker.js';
import { REALM_FILES, realmContent } from '../consistency/content.js';
import type { ScenarioEnv } from '../consistency/harness.js';
import { runScenario } from '../consistency/scenarios.js';
import { kubectl, testKubeconfigPath, testKubectlPath } from '../support/kube.js';
import { writeFiles } from '../support/realms.js';

const CRD_FILE = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${PLURAL}.yaml`);
const BIN = path.resolve(import.meta.dirname, '../../bin');
const execFileAsync = promisify(execFile);

async function must(args: string[]): Promise<string> {
  const result = await kubectl(args);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

beforeAll(async () => {
  await must(['apply', '--server-side', '-f', CRD_FILE]);
  await must(['wait', '--for=condition=Established', `crd/${PLURAL}.${GROUP}`, '--timeout=30s']);
}, 60_000);

const objectPath = (env: ScenarioEnv) => `/apis/${GROUP}/${VERSION}/namespaces/${env.namespace}/${PLURAL}/${env.objectName}`;

/** Polls until the object is Ready with `reason` at its current generation; returns it and when that was seen. */
async function waitReady(env: ScenarioEnv, reason: string, accept: (realm: PublishedRealm) => boolean = () => true): Promise<{ realm: PublishedRealm; seenAt: number }> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const realm = await kubeRequest<PublishedRealm>(env.kube, { path: objectPath(env) });
    const ready = realm.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready?.status === 'True' && ready.reason === reason && ready.observedGeneration === realm.metadata.generation && realm.status?.observedGeneration === realm.metadata.generation && accept(realm)) {
      return { realm, seenAt: now() };
    }
    if (Date.now() > deadline) throw new Error(`not Ready ${reason} within 60 s: ${JSON.stringify(realm.status)}\n${env.operatorLogTail(25)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test('rollback under readers on 3 replicas: 0 stale reads after Ready RolledBack', async () => {
  const rollbackChecker = new ConsistencyChecker();
  let kept: string | undefined;
  const run = await runScenario({ name: 'rollback', publishes: 1 }, async (env) => {
    await env.publish(1);
    const v1 = (await kubeRequest<PublishedRealm>(env.kube, { path: objectPath(env) })).status!.liveVersion!;
    kept = v1;
    // From here the main checker requires nothing: the content goes back to revision 0, then to 1.
    env.checker.markAbsent(now());
    await writeFiles(env.sourceDir, realmContent(0));
    await kubeRequest(env.kube, { method: 'PATCH', path: objectPath(env), contentType: 'application/merge-patch+json', body: { spec: { revision: 'again-0' } } });
    const republished = await waitReady(env, 'Published', (realm) => realm.status?.publishedRevision === 'again-0');
    expect(republished.realm.status!.liveVersion).not.toBe(v1);
    expect(republished.realm.status!.versions!.map((v) => v.version)).toContain(v1);

    // Readers judged by their own checker: nothing is required until the rollback is Ready.
    env.addReadTarget('rollback', { realmPath: env.realmPath, files: REALM_FILES, checker: rollbackChecker });
    await new Promise((resolve) => setTimeout(resolve, 300));
    // As a user does it: the kubectl plugin sets spec.rollbackTo and waits until Ready.
    const plugin = await execFileAsync(testKubectlPath(), ['realm', 'rollback', env.objectName, '-n', env.namespace, '--to-version', v1, '--wait'], {
      env: { ...process.env, PATH: `${BIN}:${process.env.PATH}`, KUBECONFIG: testKubeconfigPath(), DATABASE_URL: '' },
    });
    const seenAt = now();
    expect(plugin.stdout).toMatch(/^Ready: Rolled back to kept version/m);
    const rolled = await waitReady(env, 'RolledBack');
    expect(rolled.realm.status).toMatchObject({ liveVersion: v1 });
    // The plugin's change is the person's, under its own field manager, not the operator's name.
    const managed = ((await kubeRequest<{ metadata: { managedFields?: Array<{ manager: string; fieldsV1?: unknown }> } }>(env.kube, { path: objectPath(env) })).metadata.managedFields ?? []);
    expect(managed.filter((m) => JSON.stringify(m.fieldsV1 ?? {}).includes('"f:rollbackTo"')).map((m) => m.manager)).toEqual(['kubectl-realm']);
    // Reads starting after the plugin returned (it saw Ready) must return revision 1 (>= 1), never 0.
    rollbackChecker.markReady(1, seenAt, { seenAt });
    await new Promise((resolve) => setTimeout(resolve, 1500));
  });
  rollbackChecker.finish();
  expect(kept).toBeDefined();
  expect(rollbackChecker.violations).toEqual([]);
  expect(rollbackChecker.counts.violations).toBe(0);
  expect(rollbackChecker.counts.corrupt).toBe(0);
  expect(rollbackChecker.counts.errorsAfterReady).toBe(0);
  // The readers did read after Ready.
  expect(rollbackChecker.counts.checkedAfterReady).toBeGreaterThan(30);
  expect(run.result.counts.violations).toBe(0);
  expect(run.result.counts.corrupt).toBe(0);
}, 240_000);
