import { bearerToken, MetricsAccess, type AccessReviewer, type ReviewedUser } from '../../src/cli/metrics-server.js';

/** A reviewer that knows two tokens and counts the API calls it would have made. */
function fakeReviewer(): AccessReviewer & { calls: string[]; allow: Set<string> } {
  const users: Record<string, ReviewedUser> = { 'reader-token': { username: 'reader' }, 'other-token': { username: 'other' } };
  const calls: string[] = [];
  const allow = new Set(['reader']);
  return {
    calls,
    allow,
    async authenticate(token) {
      calls.push(`TokenReview ${token}`);
      const user = users[token];
      return user ? { authenticated: true, user } : { authenticated: false, error: 'invalid bearer token' };
    },
    async authorize(user, verb, path) {
      calls.push(`SubjectAccessReview ${user.username} ${verb} ${path}`);
      return { allowed: allow.has(user.username) };
    },
  };
}

describe('metrics access (TokenReview + SubjectAccessReview, cached)', () => {
  test('no token → 401 without asking the API server; unknown token → 401; not permitted → 403; permitted → 200', async () => {
    const reviewer = fakeReviewer();
    const access = new MetricsAccess(reviewer);
    expect(await access.decide(undefined)).toEqual({ status: 401, reason: 'no bearer token' });
    expect(await access.decide('Basic dXNlcjpwYXNz')).toMatchObject({ status: 401 });
    expect(reviewer.calls).toEqual([]);
    expect(await access.decide('Bearer forged')).toEqual({ status: 401, reason: 'invalid bearer token' });
    expect(await access.decide('Bearer other-token')).toEqual({ status: 403, reason: 'other may not get /metrics' });
    expect(await access.decide('bearer reader-token')).toEqual({ status: 200, user: 'reader' });
    expect(reviewer.calls).toEqual([
      'TokenReview forged',
      'TokenReview other-token',
      'SubjectAccessReview other get /metrics',
      'TokenReview reader-token',
      'SubjectAccessReview reader get /metrics',
    ]);
  });

  test('decisions are reused until their TTL (refusals for less long), then reviewed again', async () => {
    const reviewer = fakeReviewer();
    let now = 0;
    const access = new MetricsAccess(reviewer, { allowTtlMs: 60_000, denyTtlMs: 10_000, now: () => now });
    await access.decide('Bearer reader-token');
    await access.decide('Bearer other-token');
    const reviews = reviewer.calls.length;
    now = 9_999;
    await access.decide('Bearer reader-token');
    await access.decide('Bearer other-token');
    expect(reviewer.calls.length).toBe(reviews);
    // A RoleBinding granted meanwhile takes effect once the refusal expires.
    reviewer.allow.add('other');
    now = 10_001;
    expect(await access.decide('Bearer other-token')).toEqual({ status: 200, user: 'other' });
    expect(await access.decide('Bearer reader-token')).toEqual({ status: 200, user: 'reader' });
    expect(reviewer.calls.length).toBe(reviews + 2);
    // And a revoked permission stops working once the allowed decision expires.
    reviewer.allow.delete('reader');
    now = 60_001;
    expect(await access.decide('Bearer reader-token')).toMatchObject({ status: 403 });
  });

  test('API errors are not cached: the next request asks again', async () => {
    const reviewer = fakeReviewer();
    let failing = true;
    const flaky: AccessReviewer = {
      authenticate: async (token) => {
        if (failing) throw new Error('connection refused');
        return reviewer.authenticate(token);
      },
      authorize: (user, verb, path) => reviewer.authorize(user, verb, path),
    };
    const access = new MetricsAccess(flaky);
    await expect(access.decide('Bearer reader-token')).rejects.toThrow('connection refused');
    failing = false;
    expect(await access.decide('Bearer reader-token')).toEqual({ status: 200, user: 'reader' });
  });

  test('the cache is bounded', async () => {
    const reviewer = fakeReviewer();
    const access = new MetricsAccess(reviewer, { maxEntries: 2 });
    await access.decide('Bearer a');
    await access.decide('Bearer b');
    await access.decide('Bearer c');
    const before = reviewer.calls.length;
    await access.decide('Bearer c'); // cached
    await access.decide('Bearer a'); // evicted: reviewed again
    expect(reviewer.calls.slice(before)).toEqual(['TokenReview a']);
  });

  test('bearer token parsing', () => {
    expect([bearerToken('Bearer abc'), bearerToken('BEARER abc '), bearerToken('Bearer'), bearerToken('Bearer a b'), bearerToken(undefined)]).toEqual(['abc', 'abc', undefined, undefined, undefined]);
  });
});
