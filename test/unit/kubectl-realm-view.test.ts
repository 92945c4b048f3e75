/** `kubectl realm` argument parsing and output (pure; the integration test runs the plugin through kubectl). */
import { formatStatusDetail, formatStatusTable, formatVersions, NO_KEPT_VERSIONS, parsePluginArgs, rollbackProgress, rollbackRefusal, UsageError } from '../../src/cli/kubectl-realm-view.js';
import type { PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';

test('status takes an optional name, a namespace or all namespaces, and DATABASE_URL as the default database', () => {
  expect(parsePluginArgs(['status'])).toEqual({ command: 'status', allNamespaces: false, common: {} });
  expect(parsePluginArgs(['status', 'blog', '-n', 'team-a'], { DATABASE_URL: 'postgres://x/y' })).toEqual({
    command: 'status',
    name: 'blog',
    allNamespaces: false,
    common: { namespace: 'team-a', databaseURL: 'postgres://x/y' },
  });
  expect(parsePluginArgs(['status', '-A', '--context', 'prod'])).toEqual({ command: 'status', allNamespaces: true, common: { context: 'prod' } });
});

test.each([
  [['status', '-A', '-n', 'x'], /not both/],
  [['versions'], /versions needs a PublishedRealm name/],
  [['versions', 'a', '-A'], /--all-namespaces is for status only/],
  [['rollback', 'a'], /rollback needs --to-version <id>/],
  [['rollback', 'a', '--to-version', '3'], /"3" is not a version id/],
  [['rollback', 'a', '--to-version', 'adopted-1764130000000'], /is not a version id/],
  [['versions', 'a', '--wait'], /--wait is for rollback only/],
  [['status', '--to-version', '2'], /--to-version is for rollback only/],
  [['status', 'a', 'b'], /unexpected argument "b"/],
  [['stauts'], /unknown command "stauts"/],
  [['status', '--bogus'], /--bogus/],
])('%j is refused: %s', (argv, message) => {
  expect(() => parsePluginArgs(argv)).toThrow(UsageError);
  expect(() => parsePluginArgs(argv)).toThrow(message);
});

test('rollback parses its version id and --wait', () => {
  expect(parsePluginArgs(['rollback', 'blog', '--to-version', 'v1764130000000-0a1b2c3d'])).toEqual({ command: 'rollback', name: 'blog', toVersion: 'v1764130000000-0a1b2c3d', wait: false, common: {} });
  expect(parsePluginArgs(['rollback', 'blog', '--to-version', 'v1764130000000-0a1b2c3d', '--wait'])).toMatchObject({ wait: true });
});

const V1 = 'v1764130000000-0a1b2c3d';
const V2 = 'v1764130099999-ffffffff';
const kept = [
  { version: V2, epoch: 9, digest: `sha256:${'b'.repeat(64)}`, fileCount: 3, totalBytes: 2048, publishedAt: '2026-11-26T05:00:00.000Z', revision: '8', live: false },
  { version: V1, epoch: 5, digest: `sha256:${'a'.repeat(64)}`, fileCount: 2, totalBytes: 100, publishedAt: '2026-11-25T05:00:00.000Z', revision: '7', live: true },
];

test('versions lists kept versions newest first with the live one marked; none says so', () => {
  const out = formatVersions({ ...realm({ versions: kept }) });
  const lines = out.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^LIVE\s+VERSION\s+EPOCH\s+REVISION\s+FILES\s+SIZE\s+PUBLISHED AT\s+DIGEST/);
  expect(lines[1]).toMatch(new RegExp(`^\\s+${V2}\\s+9\\s+8\\s+3\\s+2\\.0 KiB`));
  expect(lines[2]).toMatch(new RegExp(`^\\*\\s+${V1}\\s+5\\s+7\\s+2\\s`));
  expect(formatVersions(realm())).toBe(`ns/blog: ${NO_KEPT_VERSIONS}.\n`);
});

test('rollback refuses a version that is not kept, naming the kept ones', () => {
  expect(rollbackRefusal(realm({ versions: kept }), V1)).toBeUndefined();
  expect(rollbackRefusal(realm({ versions: kept }), 'v1-00000000')).toBe(`v1-00000000 is not a kept version of ns/blog (kept: ${V2}, ${V1}); choose one from kubectl realm versions blog`);
  expect(rollbackRefusal(realm(), V1)).toMatch(/kept: none/);
});

test('rollback --wait: waiting until the patched generation is observed Ready; Stalled ends it', () => {
  const t = '2026-11-26T05:00:00Z';
  const ready = (g: number) => ({ type: 'Ready', status: 'True' as const, reason: 'RolledBack', message: 'Rolled back', lastTransitionTime: t, observedGeneration: g });
  expect(rollbackProgress(realm({ observedGeneration: 1, conditions: [ready(1)] }), 2)).toEqual({ state: 'waiting' });
  expect(rollbackProgress(realm({ observedGeneration: 2, conditions: [{ ...ready(2), status: 'False', reason: 'RollingBack' }] }), 2)).toEqual({ state: 'waiting' });
  expect(rollbackProgress(realm({ observedGeneration: 2, conditions: [ready(2)] }), 2)).toEqual({ state: 'ready', message: 'Rolled back' });
  const stalled = { type: 'Stalled', status: 'True' as const, reason: 'VersionNotKept', message: 'not kept', lastTransitionTime: t, observedGeneration: 2 };
  expect(rollbackProgress(realm({ observedGeneration: 2, conditions: [{ ...ready(2), status: 'False' }, stalled] }), 2)).toEqual({ state: 'stalled', message: 'VersionNotKept: not kept' });
});

const realm = (status?: PublishedRealm['status']): PublishedRealm => ({
  apiVersion: 'realm-operator.dev/v1alpha1',
  kind: 'PublishedRealm',
  metadata: { name: 'blog', namespace: 'ns', generation: 2 },
  spec: { sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/b/' },
  ...(status ? { status } : {}),
});

test('an object not published yet says so, and its row has dashes', () => {
  expect(formatStatusDetail(realm())).toContain('Live version:      none (not published yet)');
  expect(formatStatusTable([realm()], false).split('\n')[1]).toMatch(/^blog +Unknown +- +- +- +- +- +- +-$/);
});

test('per-replica rows judge each live replica against the live epoch, counting a whole-cache drop', () => {
  const text = formatStatusDetail(realm({ epoch: 10, publishedGeneration: 1, publishedRevision: '3', replicas: { acknowledged: 2, expected: 3, mode: 'Acknowledged', missing: ['c'] } }), [
    { replicaId: 'a', live: true, ackedEpoch: 10 },
    { replicaId: 'b', live: true, ackedEpoch: 4, cacheStartedEpoch: 11 },
    { replicaId: 'c', live: true, ackedEpoch: 9 },
    { replicaId: 'd', live: false },
  ]);
  expect(text).toMatch(/^ +a +yes +10 +- +acknowledged$/m);
  expect(text).toMatch(/^ +b +yes +4 +- +acknowledged$/m);
  expect(text).toMatch(/^ +c +yes +9 +- +NOT ACKNOWLEDGED$/m);
  expect(text).toMatch(/^ +d +no +- +- +lease expired$/m);
  expect(text).toContain('(published from generation 1; the object is at 2)');
});

test('the live version and the kept versions in status <name>; a rollback says so', () => {
  const text = formatStatusDetail(realm({ epoch: 10, liveVersion: V1, versions: kept }));
  expect(text).toContain(`    Version:         ${V1}\n`);
  expect(text).toContain('  Kept versions:     2 (kubectl realm versions blog)');
  const rolled = formatStatusDetail({ ...realm({ epoch: 10, liveVersion: V1, versions: kept }), spec: { sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/b/', rollbackTo: V1 } });
  expect(rolled).toContain(`    Version:         ${V1} (rolled back: spec.rollbackTo is set)`);
  expect(formatStatusDetail(realm({ epoch: 10 }))).toContain('  Kept versions:     none yet');
});
