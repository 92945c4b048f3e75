/** A stand-in for a realm server's caches that records what the listener asked it to drop. */
import type { RealmCache, RealmCaches } from '../../src/listener/realm-listener.js';

export class RecordingCaches implements RealmCaches {
  readonly calls: string[] = [];
  private readonly realms = new Map<string, RealmCache>();
  /** When set, dropAll for that realm throws (a buggy realm server). */
  failDropAllFor: string | undefined;

  add(realmURL: string): this {
    this.realms.set(realmURL, {
      dropPath: (path) => void this.calls.push(`dropPath ${realmURL} ${path}`),
      dropAll: () => {
        if (this.failDropAllFor === realmURL) throw new Error('cache is broken');
        this.calls.push(`dropAll ${realmURL}`);
      },
      bumpDefinitionsGeneration: (modules) => void this.calls.push(`bump ${realmURL}${modules ? ` ${modules.join(',')}` : ''}`),
    });
    return this;
  }
  find(realmURL: string): RealmCache | undefined {
    return this.realms.get(realmURL);
  }
  all(): Iterable<RealmCache> {
    return this.realms.values();
  }
  count(call: string): number {
    return this.calls.filter((c) => c === call).length;
  }
}
