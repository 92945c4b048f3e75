/**
 * deploy/base's MutatingAdmissionPolicy (the unpublish finalizer on create), applied to a test or
 * bench API server, and a wait until the API server applies it: policies take effect through an
 * informer, a moment after the apply returns.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { GROUP, UNPUBLISH_FINALIZER, VERSION } from '../../src/api/v1alpha1/published-realm-types.js';

export const FINALIZER_POLICY_FILE = path.resolve(import.meta.dirname, '../../deploy/base/finalizer-policy.yaml');

/** kubectl returning stdout and throwing on failure (test/support/e2e.ts's `must`, the bench's kubectl). */
export type Kubectl = (args: string[], input?: string) => Promise<string>;

interface PolicyDocument {
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown>;
}

/**
 * The policy and binding as shipped; with `onlyNamespace`, the binding (renamed after it) matches
 * that namespace alone, so a suite sharing an API server with others changes nothing of theirs.
 */
export async function finalizerPolicyManifest(onlyNamespace?: string): Promise<string> {
  const docs = parseAllDocuments(await fs.readFile(FINALIZER_POLICY_FILE, 'utf8')).map((d) => d.toJS() as PolicyDocument);
  if (onlyNamespace) {
    for (const doc of docs) {
      if (doc.kind !== 'MutatingAdmissionPolicyBinding') continue;
      doc.metadata.name = `${doc.metadata.name}.${onlyNamespace}`;
      doc.spec.matchResources = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': onlyNamespace } } };
    }
  }
  return docs.map((d) => stringify(d)).join('---\n');
}

/**
 * Applies the policy and waits until a server-side dry-run create in `probeNamespace` (which must
 * exist, and which the binding must match) comes back with the finalizer.
 */
export async function applyFinalizerPolicy(kubectl: Kubectl, probeNamespace: string, options: { onlyNamespace?: string; timeoutMs?: number } = {}): Promise<void> {
  // --force-conflicts: the policy may already be there, applied client-side from deploy/base (test/e2e/deploy.test.ts).
  await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], await finalizerPolicyManifest(options.onlyNamespace));
  const probe = JSON.stringify({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'PublishedRealm',
    metadata: { name: 'finalizer-policy-probe', namespace: probeNamespace },
    spec: { sourceRealmURL: 'http://localhost:4201/probe/source/', publishedRealmURL: 'http://probe.localhost/probe/' },
  });
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    // A CRD just established may still answer ServiceUnavailable for a moment: retried too.
    let outcome: string;
    try {
      const created = JSON.parse(await kubectl(['create', '--dry-run=server', '-o', 'json', '-f', '-'], probe)) as { metadata: { finalizers?: string[] } };
      if (created.metadata.finalizers?.includes(UNPUBLISH_FINALIZER)) return;
      outcome = `created with finalizers ${JSON.stringify(created.metadata.finalizers ?? [])}`;
    } catch (error) {
      outcome = (error as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`the finalizer policy did not take effect in namespace ${probeNamespace} within ${options.timeoutMs ?? 30_000} ms; last probe: ${outcome}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
