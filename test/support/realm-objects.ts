/**
 * Realm objects on the test run's kube-apiserver: the CRD and a namespace, and create / read /
 * delete of Realms in it, for the Realm reconciler's integration tests.
 */
import path from 'node:path';
import { GROUP, REALM_KIND, REALM_PLURAL, VERSION, type Realm, type RealmStatus } from '../../src/api/v1alpha1/realm-types.js';
import { CustomResourceKube } from '../../src/reconciler/published-realm/kube.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { must } from './e2e.js';
import { testKubeConfig } from './kube.js';
import { silentLogger } from './realms.js';

export interface RealmObjects {
  collection: string;
  create(name: string, spec: Record<string, unknown>): Promise<Realm>;
  /** The object, or undefined once it is gone. */
  read(name: string): Promise<Realm | undefined>;
  /** Requests deletion (the finalizer holds it until the reconciler releases it). */
  remove(name: string): Promise<void>;
}

/** Installs the Realm CRD (waiting until it is served) and creates `namespace`. */
export async function setUpRealmNamespace(namespace: string): Promise<void> {
  await must(['apply', '--server-side', '-f', path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${REALM_PLURAL}.yaml`)]);
  await must(['wait', '--for=condition=Established', `crd/${REALM_PLURAL}.${GROUP}`, '--timeout=30s']);
  await must(['create', 'namespace', namespace]);
}

/** The status/finalizer/Event client the Realm reconciler uses, as `identity`. */
export function realmKube(identity: string): CustomResourceKube<Realm, RealmStatus> {
  return new CustomResourceKube<Realm, RealmStatus>(testKubeConfig(), silentLogger, identity, undefined, { kind: REALM_KIND, plural: REALM_PLURAL });
}

export function realmObjects(namespace: string): RealmObjects {
  const kube = testKubeConfig();
  const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${REALM_PLURAL}`;
  return {
    collection,
    create: (name, spec) => kubeRequest<Realm>(kube, { method: 'POST', path: collection, body: { apiVersion: `${GROUP}/${VERSION}`, kind: REALM_KIND, metadata: { name, namespace }, spec } }),
    async read(name) {
      try {
        return await kubeRequest<Realm>(kube, { path: `${collection}/${name}` });
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode === 404) return undefined;
        throw error;
      }
    },
    async remove(name) {
      await kubeRequest(kube, { method: 'DELETE', path: `${collection}/${name}` });
    },
  };
}
