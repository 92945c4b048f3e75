/**
 * One PublishedRealm of the kind suite, end to end in the cluster: its own namespace, a source
 * realm registered in the cluster's database with files on the realms volume (through the
 * toolbox), the object, and publishes: write revision N into the source, PATCH spec.revision, poll
 * until Ready for it. `close()` deletes the object (the operator unpublishes it), the namespace and
 * the source realm.
 */
import { API_VERSION, GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { api, getOrUndefined, kubectl, operatorLogs, randomSuffix, REALMS_ROOT, waitFor } from './kind.js';
import type { Toolbox } from './kind-toolbox.js';

export function readyCondition(object: PublishedRealm | undefined) {
  return object?.status?.conditions?.find((c) => c.type === 'Ready');
}

/** Ready=True for `revision`, for the object's current generation. */
export function isReadyFor(object: PublishedRealm | undefined, revision: number): boolean {
  const status = object?.status;
  const ready = readyCondition(object);
  const generation = object?.metadata.generation;
  return (
    status?.publishedRevision === String(revision) &&
    ready?.status === 'True' &&
    status.observedGeneration === generation &&
    (ready.observedGeneration === undefined || ready.observedGeneration === generation)
  );
}

export interface KindRealmOptions {
  /** Short name: namespace, URLs and the owner derive from it (lowercase letters and digits). */
  name: string;
  /** The published realm's host; must be under the operator's published domains (deploy/kind: localhost). */
  host: string;
  /** The source realm's files at a revision. */
  content(revision: number): Record<string, string>;
  readyTimeoutMs?: number;
}

export class KindRealm {
  readonly namespace: string;
  readonly owner: string;
  readonly sourceURL: string;
  readonly publishedURL: string;
  /** URL path of the published realm (`/…/`), to read with the Host header `host`. */
  readonly realmPath: string;
  readonly objectName = 'realm';
  sourceDir: string | undefined;
  private created = false;

  constructor(
    private readonly toolbox: Toolbox,
    readonly options: KindRealmOptions,
  ) {
    const suffix = randomSuffix();
    this.namespace = `kind-${options.name}-${suffix}`;
    this.owner = `kind${options.name}${suffix}`;
    this.sourceURL = `http://localhost:4201/${this.owner}/source/`;
    this.realmPath = `/${options.name}-${suffix}/`;
    this.publishedURL = `http://${options.host}${this.realmPath}`;
  }

  get publisher(): string {
    return `@${this.owner}:localhost`;
  }

  private get objectPath(): string {
    return `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PLURAL}/${this.objectName}`;
  }

  /** Namespace and source realm at revision 0 (no PublishedRealm yet). */
  async prepare(): Promise<void> {
    await api({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: this.namespace } } });
    this.sourceDir = await this.toolbox.createSourceRealm(this.sourceURL, this.owner);
    if (this.sourceDir !== `${REALMS_ROOT}/${this.owner}/source`) throw new Error(`seed-sample put the source realm at ${this.sourceDir}, not ${REALMS_ROOT}/${this.owner}/source`);
    await this.toolbox.writeFiles(this.sourceDir, this.options.content(0));
  }

  async get(): Promise<PublishedRealm | undefined> {
    return getOrUndefined<PublishedRealm>(this.objectPath);
  }

  /** Creates the PublishedRealm at revision 0; resolves when it is Ready (the time it was seen, also given to `onReady`). */
  async create(onReady?: (at: number) => void): Promise<number> {
    await api({
      method: 'POST',
      path: `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PLURAL}`,
      body: {
        apiVersion: API_VERSION,
        kind: 'PublishedRealm',
        metadata: { name: this.objectName, namespace: this.namespace },
        spec: { sourceRealmURL: this.sourceURL, publishedRealmURL: this.publishedURL, revision: '0', publisher: this.publisher, reindex: { enabled: true } },
      },
    });
    this.created = true;
    return this.waitReady(0, onReady);
  }

  /**
   * Writes `revision` into the source realm, PATCHes spec.revision; resolves when Ready for it with
   * the time it was seen, which `onReady` gets synchronously (a consistency checker's T_i).
   */
  async publish(revision: number, onReady?: (at: number) => void): Promise<number> {
    await this.toolbox.writeFiles(this.sourceDir!, this.options.content(revision));
    await api({ method: 'PATCH', path: this.objectPath, contentType: 'application/merge-patch+json', body: { spec: { revision: String(revision) } } });
    return this.waitReady(revision, onReady);
  }

  /** Polls (every 100 ms) until Ready for `revision`; returns when that was seen (ms, performance-based wall clock). */
  async waitReady(revision: number, onReady?: (at: number) => void): Promise<number> {
    let last: PublishedRealm | undefined;
    let at = 0;
    await waitFor(
      async () => {
        last = await this.get();
        if (!isReadyFor(last, revision)) return false;
        // Seen Ready: record T_i before anything else runs, so no read that starts later escapes the rule.
        at = performance.timeOrigin + performance.now();
        onReady?.(at);
        return true;
      },
      this.options.readyTimeoutMs ?? 120_000,
      async () => `${this.namespace}/${this.objectName} Ready for revision ${revision}; last status ${JSON.stringify(last?.status)}\n${await operatorLogs(30)}`,
      100,
    );
    return at;
  }

  /** Deletes the object and waits until it is gone (the operator unpublished it and released its finalizer). */
  async delete(timeoutMs = 120_000): Promise<void> {
    await api({ method: 'DELETE', path: this.objectPath }).catch(() => undefined);
    await waitFor(async () => (await this.get()) === undefined, timeoutMs, async () => `${this.namespace}/${this.objectName} to be deleted; ${JSON.stringify(await this.get())}\n${await operatorLogs(30)}`, 200);
    this.created = false;
  }

  /** Deletes whatever is left: the object, the namespace, the source realm. Best effort, bounded. */
  async close(): Promise<void> {
    if (this.created) await this.delete(60_000).catch((error: Error) => console.warn(`cleanup: ${error.message}`));
    await kubectl(['delete', 'namespace', this.namespace, '--wait=false', '--ignore-not-found']);
    // seed-sample put the realm at <root>/<owner>/source: remove the owner's directory with it.
    if (this.sourceDir) await this.toolbox.removeSourceRealm(this.sourceURL, `${REALMS_ROOT}/${this.owner}`).catch((error: Error) => console.warn(`cleanup: ${error.message}`));
  }
}
