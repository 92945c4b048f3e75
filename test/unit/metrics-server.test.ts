import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { bearerToken, MetricsAccess, serveMetrics, type AccessReviewer, type ReviewedUser } from '../../src/cli/metrics-server.js';
import { KeyedGauge } from '../../src/runtime/metrics.js';

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

test('/metrics serves kept bytes and formatted families in registry order, with a Content-Length in bytes (non-ASCII label values)', async () => {
  const registry = new Registry();
  new Counter({ name: 'before_total', help: 'formatted by the registry — non-ASCII here too', registers: [registry] }).inc(2);
  const kept = new KeyedGauge({ name: 'kept', help: 'kept as bytes', labelNames: ['name'], registers: [registry] });
  new Counter({ name: 'after_total', help: 'formatted by the registry', registers: [registry] }).inc(3);
  kept.put('a', { name: 'café ☕' }, 1);
  kept.put('b', { name: 'plain' }, 2);
  const server = (await serveMetrics({ address: '127.0.0.1:0', registry, logger: pino({ level: 'silent' }) }))!;
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
    const first = await fetch(url);
    const body = await first.text();
    expect(body).toBe(await registry.metrics());
    expect(body).toContain('kept{name="café ☕"} 1');
    expect(Number(first.headers.get('content-length'))).toBe(Buffer.byteLength(body));
    // A change after a scrape is in the next one (the kept bytes are dropped on change).
    kept.drop('a');
    kept.put('b', { name: 'plain' }, 5);
    const second = await (await fetch(url)).text();
    expect(second).toBe(await registry.metrics());
    expect(second).toContain('kept{name="plain"} 5');
    expect(second).not.toContain('café');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
