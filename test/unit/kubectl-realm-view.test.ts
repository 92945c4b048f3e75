/** `kubectl realm` argument parsing and output (pure; the integration test runs the plugin through kubectl). */
import { formatStatusDetail, formatStatusTable, NO_KEPT_VERSIONS, parsePluginArgs, UsageError } from '../../src/cli/kubectl-realm-view.js';
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
  [['rollback', 'a'], /rollback needs --to-version <n>/],
  [['rollback', 'a', '--to-version', '0'], /"0" is not a version number/],
  [['status', '--to-version', '2'], /--to-version is for rollback only/],
  [['status', 'a', 'b'], /unexpected argument "b"/],
  [['stauts'], /unknown command "stauts"/],
  [['status', '--bogus'], /--bogus/],
])('%j is refused: %s', (argv, message) => {
  expect(() => parsePluginArgs(argv)).toThrow(UsageError);
  expect(() => parsePluginArgs(argv)).toThrow(message);
});

test('rollback parses its version; the refusal says versions are not kept yet', () => {
  expect(parsePluginArgs(['rollback', 'blog', '--to-version', '3'])).toEqual({ command: 'rollback', name: 'blog', toVersion: 3, common: {} });
  expect(NO_KEPT_VERSIONS).toMatch(/^this operator version does not keep published versions yet/);
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
