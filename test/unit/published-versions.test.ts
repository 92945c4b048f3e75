/** Which published versions are kept for rollback: the pure rule the post-commit clean-up applies. */
import { historyPolicyProblem, recordedHistoryPolicy, selectKeptVersions, type KeptVersion } from '../../src/dataplane/published-versions.js';

const version = (n: number, totalBytes = 100): KeptVersion => ({
  version: `v${1_764_130_000_000 + n}-0000000${n}`,
  diskId: 'd',
  epoch: n,
  digest: `sha256:${n}`,
  fileCount: 1,
  totalBytes,
  publishedAt: new Date(1_764_130_000_000 + n * 1000),
  publishedFor: null,
  revision: String(n),
});
const names = (...ns: number[]) => ns.map((n) => version(n).version);

test('keeps the newest versions up to the limit, live included', () => {
  const all = [version(1), version(2), version(3), version(4)];
  expect(selectKeptVersions(all, version(4).version, { limit: 3 })).toEqual({ kept: names(4, 3, 2), trimmed: names(1) });
  expect(selectKeptVersions(all, version(4).version, { limit: 1 })).toEqual({ kept: names(4), trimmed: names(3, 2, 1) });
});

test('after a rollback the live (older) version is kept first, then the newest others', () => {
  const all = [version(1), version(2), version(3), version(4)];
  expect(selectKeptVersions(all, version(1).version, { limit: 3 })).toEqual({ kept: names(4, 3, 1), trimmed: names(2) });
});

test('the byte budget skips versions that do not fit but never the live one', () => {
  const all = [version(1, 100), version(2, 500), version(3, 300)];
  // Live 3 (300) + 2 (500) = 800 > 700: 2 is skipped, 1 (100) fits.
  expect(selectKeptVersions(all, version(3).version, { limit: 3, maxBytes: 700 })).toEqual({ kept: names(3, 1), trimmed: names(2) });
  expect(selectKeptVersions(all, version(3).version, { limit: 3, maxBytes: 0 })).toEqual({ kept: names(3), trimmed: names(2, 1) });
});

test('input order does not matter; a live version without a row keeps the newest rows', () => {
  const shuffled = [version(2), version(4), version(1), version(3)];
  expect(selectKeptVersions(shuffled, version(4).version, { limit: 2 }).kept).toEqual(names(4, 3));
  expect(selectKeptVersions(shuffled, 'v1-00000000', { limit: 2 }).kept).toEqual(names(4, 3));
});

test.each([
  [{ limit: 0 }, /from 1 to 20/],
  [{ limit: 21 }, /from 1 to 20/],
  [{ limit: 1.5 }, /from 1 to 20/],
  [{ limit: 3, maxBytes: -1 }, /non-negative/],
])('policy %j is refused', (policy, message) => {
  expect(historyPolicyProblem(policy)).toMatch(message);
});

test('policies in range pass', () => {
  expect(historyPolicyProblem({ limit: 1 })).toBeUndefined();
  expect(historyPolicyProblem({ limit: 20, maxBytes: 0 })).toBeUndefined();
});

test('the history policy recorded in an epoch row: none, out of range or an older schema keep only the live version', () => {
  expect(recordedHistoryPolicy({ history_limit: 5, history_max_bytes: '1000' })).toEqual({ limit: 5, maxBytes: 1000 });
  expect(recordedHistoryPolicy({ history_limit: 3, history_max_bytes: null })).toEqual({ limit: 3 });
  expect(recordedHistoryPolicy({ history_limit: null, history_max_bytes: '1000' })).toEqual({ limit: 1 });
  expect(recordedHistoryPolicy({ history_limit: 21, history_max_bytes: null })).toEqual({ limit: 1 });
  expect(recordedHistoryPolicy({ history_limit: 2, history_max_bytes: '-1' })).toEqual({ limit: 1 });
  expect(recordedHistoryPolicy({})).toEqual({ limit: 1 });
  expect(recordedHistoryPolicy(undefined)).toEqual({ limit: 1 });
});
