/**
 * The realm server's view of `realm_registry`, right by construction: a request is resolved
 * against a COMPLETE snapshot of the registry rows of its origin (`<scheme>://<host>/`), never
 * against whatever subset happened to be looked up before. So a realm registered at a URL nested
 * inside another realm's URL wins for its paths as soon as the snapshot is re-read.
 *
 * Freshness: `invalidate()` (called synchronously on every `realm_registry` notification, every
 * wildcard invalidation and every listener state change) bumps a generation and forgets every
 * snapshot, so no request that starts afterwards is resolved from what was known before. A read
 * of the database that began before an invalidation may still answer the requests that were
 * waiting for it (they began before the change), but never installs its result.
 *
 * Pure logic plus one injected loader: no I/O of its own.
 */

export type RealmKind = 'source' | 'published' | 'bootstrap';

export interface RegisteredRealm {
  url: string;
  kind: RealmKind;
  diskId: string;
  /** A published realm's `source_url`: a `delete:<source URL>` notification stands for it too. */
  sourceURL?: string;
  /** `realm_operator.realm_epochs.epoch` when the snapshot was read (0: never published by the operator). */
  epoch: number;
}

/** The origin (`<scheme>://<host>/`) of an absolute URL string, or undefined when it has none. */
export function originOf(url: string): string | undefined {
  const schemeEnd = url.indexOf('://');
  if (schemeEnd <= 0) return undefined;
  const pathStart = url.indexOf('/', schemeEnd + 3);
  if (pathStart < 0 || pathStart === schemeEnd + 3) return undefined;
  return url.slice(0, pathStart + 1);
}

/**
 * The realm whose URL is the longest prefix of `url` ending at a `/` boundary (realm URLs end in
 * `/`, so a plain string prefix is a path-segment prefix). `realms` must be every realm of the
 * origin: resolution is only right against a complete list.
 */
export function resolveRealm<R extends { url: string }>(realms: Iterable<R>, url: string): R | undefined {
  let best: R | undefined;
  for (const realm of realms) {
    if (!realm.url.endsWith('/') || !url.startsWith(realm.url)) continue;
    if (!best || realm.url.length > best.url.length) best = realm;
  }
  return best;
}

/** Reads every registry row whose URL starts with `origin`. */
export type RegistryLoader = (origin: string) => Promise<RegisteredRealm[]>;

interface PendingLoad {
  generation: number;
  rows: Promise<RegisteredRealm[]>;
}

export class RealmRegistrySnapshot {
  private generation = 0;
  private readonly snapshots = new Map<string, RegisteredRealm[]>();
  private readonly loads = new Map<string, PendingLoad>();

  constructor(private readonly load: RegistryLoader) {}

  /** Forgets every snapshot and orphans every read in flight. Synchronous on purpose. */
  invalidate(): void {
    this.generation += 1;
    this.snapshots.clear();
    this.loads.clear();
  }

  /** The current generation (tests and logs). */
  get currentGeneration(): number {
    return this.generation;
  }

  /** Whether `origin` has a snapshot that may be used right now. */
  has(origin: string): boolean {
    return this.snapshots.has(origin);
  }

  /**
   * Resolves `url`. With `useSnapshot` (the listener vouches that no registry change was missed)
   * from the origin's snapshot, reading it first if needed; without, from a fresh read that is
   * not kept.
   */
  async resolve(url: string, useSnapshot: boolean): Promise<RegisteredRealm | undefined> {
    const origin = originOf(url);
    if (!origin) return undefined;
    if (!useSnapshot) return resolveRealm(await this.load(origin), url);
    const known = this.snapshots.get(origin);
    if (known) return resolveRealm(known, url);
    return resolveRealm(await this.loadSnapshot(origin), url);
  }

  private loadSnapshot(origin: string): Promise<RegisteredRealm[]> {
    const pending = this.loads.get(origin);
    if (pending && pending.generation === this.generation) return pending.rows;
    const generation = this.generation;
    const rows = this.load(origin).then((loaded) => {
      // Installed only if nothing was invalidated while the read was in flight.
      if (generation === this.generation) this.snapshots.set(origin, loaded);
      return loaded;
    });
    const entry = { generation, rows };
    this.loads.set(origin, entry);
    const forget = () => {
      if (this.loads.get(origin) === entry) this.loads.delete(origin);
    };
    rows.then(forget, forget);
    return rows;
  }
}
