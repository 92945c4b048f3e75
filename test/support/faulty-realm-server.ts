/**
 * A deliberately faulty realm-server replica, for proving the consistency checker can fail. Test
 * code only: it runs the built server (dist/cli/main.js, exactly what replicas run) after
 * breaking one of its guarantees in memory, as REALM_TEST_MISBEHAVE (JSON, see `Misbehaviour` in
 * realm-server-process.ts) says:
 *
 * - `dropCacheLateMs`: `RealmFileCache.dropAll` returns at once, so the listener acknowledges the
 *   invalidation, but empties the cache only that many ms later: the operator's Ready is then a
 *   lie for that long, and the checker must report the stale reads in between.
 * - `ignoreLease`: `RealmListener.cacheTrusted` is always true, so a replica cut off from
 *   PostgreSQL (or paused past its lease) keeps serving its cache after the operator stopped
 *   waiting for it.
 *
 * Run as `node --import tsx test/support/faulty-realm-server.ts realm-server <flags>`.
 */
import { pathToFileURL } from 'node:url';
import path from 'node:path';

type FileCacheModule = typeof import('../../src/realm-server/file-cache.js');
type ListenerModule = typeof import('../../src/listener/realm-listener.js');

const DIST = path.resolve(import.meta.dirname, '../../dist');
const load = <T>(relative: string): Promise<T> => import(pathToFileURL(path.join(DIST, relative)).href) as Promise<T>;

const misbehave = JSON.parse(process.env.REALM_TEST_MISBEHAVE ?? '{}') as { dropCacheLateMs?: number; ignoreLease?: boolean };

if (misbehave.dropCacheLateMs !== undefined) {
  const delay = misbehave.dropCacheLateMs;
  const { RealmFileCache } = await load<FileCacheModule>('realm-server/file-cache.js');
  const dropAll = RealmFileCache.prototype.dropAll;
  RealmFileCache.prototype.dropAll = function dropAllLate(this: InstanceType<typeof RealmFileCache>, epoch?: number): void {
    setTimeout(() => dropAll.call(this, epoch), delay);
  };
}

if (misbehave.ignoreLease) {
  const { RealmListener } = await load<ListenerModule>('listener/realm-listener.js');
  Object.defineProperty(RealmListener.prototype, 'cacheTrusted', { get: () => true, configurable: true });
}

process.stderr.write(`${JSON.stringify({ level: 40, time: Date.now(), msg: 'FAULTY TEST REPLICA: misbehaving on purpose', misbehave })}\n`);
await load<unknown>('cli/main.js');
