/**
 * The overlap check's candidates (`readPublishTargetRows`) come from index lookups instead of a read
 * of the whole `realm_registry`, and are still exactly the rows the full predicate
 * `url <> $2 AND (starts_with($2, url) OR starts_with(url, $2))` finds: registry URLs that are a
 * prefix of the published URL (its every prefix is probed) and URLs that start with it (a byte-order
 * range under COLLATE "C", which an index on `(url COLLATE "C")` serves and a read of the table
 * answers without one). Real PostgreSQL; the database's collation is C.UTF-8, not C, as in Boxel's
 * deployments (en_US.UTF-8), so Boxel's index on `url` cannot serve the range.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import type { Queryable } from '../../src/dataplane/db.js';
import { readPublishTargetRows } from '../../src/dataplane/realm-state.js';
import { findOverlappingRealmURLs } from '../../src/wire/realm-url.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const SOURCE = 'http://localhost:4201/owner/src/';
/** The index that serves the range; the tests create and drop it (nothing ships it: see docs/publish-statements.md). */
const C_INDEX = 'realm_registry_url_c_test';

/**
 * Published URLs to check (none registered) and, for each, registry rows around it: prefixes with and
 * without "/", rows it contains, and the byte-order neighbours of the range's ends ("." just below
 * "/", "0" just above it, which is the range's end), LIKE's metacharacters, non-ASCII and U+10FFFF,
 * case and host aliases.
 */
const TARGETS = ['http://pub.localhost/ns/a/', 'http://pub.localhost/ns/caf%C3%A9/', 'https://x.example/'];
function rowsAround(target: string): string[] {
  const base = target.slice(0, -1);
  return [
    ...[...target].map((_, n) => target.slice(0, n)).filter((prefix) => prefix.length > 0),
    `${target}b/`,
    `${target}b/c/`,
    `${target}b`,
    `${target}_/`,
    `${target}%/`,
    `${target}\u00e9/`,
    `${target}\u{10FFFF}`,
    `${target}\u{10FFFF}/x/`,
    `${base}0`,
    `${base}0/`,
    `${base}./`,
    `${base}-b/`,
    `${base}\u{10FFFF}/`,
    `${base}/`.toUpperCase(),
    target.replace('://', '://www.'),
  ];
}
const ROWS = [...new Set(['', ...TARGETS.flatMap(rowsAround)])].filter((url) => !TARGETS.includes(url));

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await insertRegistryURLs(db.pool, ROWS);
});
afterAll(() => db?.drop());

async function insertRegistryURLs(pool: pg.Pool, urls: string[]): Promise<void> {
  await pool.query(
    `INSERT INTO realm_registry (url, kind, disk_id, owner_username) SELECT url, 'source', 'd/' || ordinality, 'owner' FROM unnest($1::text[]) WITH ORDINALITY AS u(url)`,
    [urls],
  );
}

/** A plan line scanning `index` of realm_registry: an index (only) scan, or the index half of a bitmap scan. */
const indexScan = (index: string) => `(?:Index (?:Only )?Scan using ${index} on realm_registry(?: realm_registry_\\d+)?|Bitmap Index Scan on ${index})`;

/** The full predicate the candidates replaced, over every row: the reference. */
async function fullPredicate(pool: pg.Pool, url: string): Promise<string[]> {
  const { rows } = await pool.query<{ url: string }>(`SELECT url FROM realm_registry WHERE url <> $1 AND (starts_with($1, url) OR starts_with(url, $1)) ORDER BY url`, [url]);
  return rows.map((row) => row.url);
}

describe('overlap candidates by index (real PostgreSQL)', () => {
  test.each([
    ['without an index on (url COLLATE "C")', false],
    ['with one', true],
  ])('%s: every published URL gets exactly the full predicate\'s rows, prefixes and contained URLs alike', async (_, withIndex) => {
    if (withIndex) await db.pool.query(`CREATE INDEX ${C_INDEX} ON realm_registry (url COLLATE "C")`);
    try {
      for (const target of TARGETS) {
        const expected = await fullPredicate(db.pool, target);
        for (const epochRow of [undefined, 'read', 'lock'] as const) {
          const rows = await readPublishTargetRows(db.pool, SOURCE, target, undefined, { epochRow });
          expect(rows.published).toBeUndefined();
          expect(rows.overlapCandidates).toEqual(expected);
        }
      }
    } finally {
      if (withIndex) await db.pool.query(`DROP INDEX ${C_INDEX}`);
    }
  });

  test('the candidates are not trivially equal: prefixes and contained URLs are found, the range\'s neighbours are not', async () => {
    const target = 'http://pub.localhost/ns/a/';
    const { overlapCandidates } = await readPublishTargetRows(db.pool, SOURCE, target);
    for (const url of ['', 'h', 'http://pub.localhost', 'http://pub.localhost/', 'http://pub.localhost/ns/', 'http://pub.localhost/ns/a']) expect(overlapCandidates).toContain(url);
    for (const url of [`${target}b/`, `${target}b/c/`, `${target}\u00e9/`, `${target}\u{10FFFF}/x/`, `${target}_/`]) expect(overlapCandidates).toContain(url);
    for (const url of ['http://pub.localhost/ns/a0', 'http://pub.localhost/ns/a./', 'http://pub.localhost/ns/a-b/', 'HTTP://PUB.LOCALHOST/NS/A/', 'http://www.pub.localhost/ns/a/']) {
      expect(overlapCandidates).not.toContain(url);
    }
    // The rule then keeps the realms that contain or are contained in it (an unparsable row, such as "http:/", is compared as it is).
    const overlapping = findOverlappingRealmURLs(target, overlapCandidates);
    for (const url of ['http://pub.localhost/', 'http://pub.localhost/ns/', `${target}b/`, `${target}b/c/`, `${target}\u00e9/`, `${target}\u{10FFFF}/x/`]) expect(overlapping).toContain(url);
  });

  test('a registered published URL reads no candidates (the overlap check is for new URLs)', async () => {
    const registered = 'http://pub.localhost/ns/a/b/';
    expect((await readPublishTargetRows(db.pool, SOURCE, registered)).overlapCandidates).toEqual([]);
  });

  test('with many rows, the statement reads the registry only through indexes: Boxel\'s on url for the prefixes, one on (url COLLATE "C") for the range; the owner once', async () => {
    const many = await createTestDatabase();
    try {
      const urls = Array.from({ length: 20_000 }, (_, i) => (i % 2 === 0 ? `http://localhost:4201/scale/src-${i}/` : `http://pub.localhost/scale/${i}/`));
      await insertRegistryURLs(many.pool, [...urls, 'http://pub.localhost/', 'http://pub.localhost/scale/new/inner/']);
      await many.pool.query(`CREATE INDEX ${C_INDEX} ON realm_registry (url COLLATE "C")`);
      await many.pool.query('ANALYZE realm_registry');
      const target = 'http://pub.localhost/scale/new/';

      // The statement exactly as readPublishTargetRows sends it, explained with its own parameters.
      const sent: Array<{ text: string; values: unknown[] }> = [];
      const recorder: Queryable = {
        query: (text, values) => {
          sent.push({ text, values: values ?? [] });
          return many.pool.query(text, values);
        },
      };
      const read = await readPublishTargetRows(recorder, SOURCE, target, undefined, { epochRow: 'lock' });
      expect(read.overlapCandidates).toEqual(['http://pub.localhost/', 'http://pub.localhost/scale/new/inner/']);
      expect(sent).toHaveLength(1);
      const { text, values } = sent[0]!;

      const analyzed = (await many.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ${text}`, values)).rows.map((r) => r['QUERY PLAN']).join('\n');
      // A prepared statement may run a generic plan (no parameter values): it must use the indexes too.
      const generic = (await many.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN (GENERIC_PLAN, COSTS OFF) ${text}`)).rows.map((r) => r['QUERY PLAN']).join('\n');
      for (const plan of [analyzed, generic]) {
        expect(plan).not.toMatch(/Seq Scan on realm_registry/);
        expect(plan).toMatch(new RegExp(`${indexScan('realm_registry_url_uniq')}[^\\n]*\\n\\s+Index Cond: \\(\\(url\\)::text = ANY`));
        expect(plan).toMatch(new RegExp(`${indexScan(C_INDEX)}[^\\n]*\\n\\s+Index Cond: \\(\\(\\(url\\)::text > `));
      }
      // Executed: each arm read the one row it found, not the table.
      expect(analyzed).toMatch(new RegExp(`${indexScan('realm_registry_url_uniq')} \\(actual rows=1 loops=1\\)`));
      expect(analyzed).toMatch(new RegExp(`${indexScan(C_INDEX)} \\(actual rows=1 loops=1\\)`));

      // The source owner's Matrix id is looked up once, not again for each rule that uses the publisher it defaults.
      for (const plan of [analyzed, generic]) expect(plan.match(/Filter: .*starts_with\(\(username\)::text/g)).toHaveLength(1);

      // Without the index the answer is the same; only the range arm reads the table.
      await many.pool.query(`DROP INDEX ${C_INDEX}`);
      expect((await readPublishTargetRows(many.pool, SOURCE, target)).overlapCandidates).toEqual(read.overlapCandidates);
      const unindexed = (await many.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN (COSTS OFF) ${text}`, values)).rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(unindexed.match(/Seq Scan on realm_registry/g)).toHaveLength(1);
    } finally {
      await many.drop();
    }
  });
});
