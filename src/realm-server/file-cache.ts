/**
 * One realm's in-memory cache of file bytes, like Boxel's source cache, with generation counters
 * so that a read which started before an invalidation can never put old bytes back afterwards:
 * a read notes the realm's and the path's generation when it starts and may fill the cache only
 * if neither moved while it read.
 */
export interface CachedFile {
  bytes: Buffer;
  /** The realm epoch known when the read that filled the entry started. */
  epoch: number;
}

export interface ReadTicket {
  path: string;
  realmGeneration: number;
  pathGeneration: number;
  epoch: number;
}

export class RealmFileCache {
  private readonly files = new Map<string, CachedFile>();
  private readonly pathGenerations = new Map<string, number>();
  private realmGeneration = 0;
  /** The newest epoch this replica knows the realm's content to be at. */
  epoch: number;
  /** Bumped by `module_cache_invalidated`; this server caches no definitions, but keeps the count. */
  definitionsGeneration = 0;

  /**
   * @param sourceURL the realm's `source_url` when it is a published realm: Boxel deletes a source
   *   realm's published realms with it and sends one `delete:<source URL>` for all of them.
   */
  constructor(epoch = 0, public sourceURL?: string) {
    this.epoch = epoch;
  }

  get(path: string): CachedFile | undefined {
    return this.files.get(path);
  }

  /** Call before reading `path` from disk. */
  beginRead(path: string): ReadTicket {
    return { path, realmGeneration: this.realmGeneration, pathGeneration: this.pathGenerations.get(path) ?? 0, epoch: this.epoch };
  }

  /** Stores what a read returned, unless an invalidation happened since it began. Returns whether it did. */
  fill(ticket: ReadTicket, bytes: Buffer): boolean {
    if (ticket.realmGeneration !== this.realmGeneration || ticket.pathGeneration !== (this.pathGenerations.get(ticket.path) ?? 0)) return false;
    this.files.set(ticket.path, { bytes, epoch: ticket.epoch });
    return true;
  }

  /**
   * Drops `path`, and any cached path that differs from it only in letter case (on a
   * case-insensitive volume they are the same file; dropping more than needed is always safe).
   */
  dropPath(path: string): { caseVariantsDropped: number } {
    this.bumpPath(path);
    this.files.delete(path);
    let caseVariantsDropped = 0;
    const folded = path.toLowerCase();
    for (const cached of [...this.files.keys()]) {
      if (cached.toLowerCase() !== folded) continue;
      this.bumpPath(cached);
      this.files.delete(cached);
      caseVariantsDropped += 1;
    }
    return { caseVariantsDropped };
  }

  private bumpPath(path: string): void {
    this.pathGenerations.set(path, (this.pathGenerations.get(path) ?? 0) + 1);
  }

  dropAll(epoch?: number): void {
    this.realmGeneration += 1;
    this.files.clear();
    // Per-path generations are superseded by the realm generation; forget them so the map stays small.
    this.pathGenerations.clear();
    if (epoch !== undefined && epoch > this.epoch) this.epoch = epoch;
  }

  bumpDefinitionsGeneration(): void {
    this.definitionsGeneration += 1;
  }

  get size(): number {
    return this.files.size;
  }
}
