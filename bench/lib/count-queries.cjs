/**
 * BENCHMARK ONLY — a preload that counts the SQL statements a Node process sends through `pg`, by
 * text (first 110 characters), and writes the counts to $COUNT_QUERIES_DIR/queries-<pid>.txt every
 * 2 s and at exit. How the scale bench's "queries per object" were counted:
 *
 *   COUNT_QUERIES_DIR=/tmp/q SCALE_REALMS=100 SCALE_NODE_OPTIONS="--require $PWD/bench/lib/count-queries.cjs" npx tsx bench/scale.ts
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const pg = require('pg');

const dir = process.env.COUNT_QUERIES_DIR || '/tmp';
const counts = new Map();
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function countedQuery(config, values, callback) {
  const text = typeof config === 'string' ? config : (config && (config.text || config.name)) || String(config);
  // Counted by raw text here and normalised only when written: two regular expressions per
  // statement were ~0.5 s of the measured operator's CPU in bench-scale.
  counts.set(text, (counts.get(text) || 0) + 1);
  return query.call(this, config, values, callback);
};
// Long integer literals (the realm lock key, inlined into one round trip with BEGIN) as N, so one statement counts as one.
const normalise = (text) => text.replace(/\s+/g, ' ').replace(/-?\d{10,}/g, 'N').slice(0, 110);
// Each distinct text normalised once, not at every dump: with lock keys inlined most texts are
// distinct, and re-normalising all of them every 2 s cost the measured operator ~0.3 s in bench-scale.
const keys = new Map();
const keyOf = (text) => {
  let key = keys.get(text);
  if (key === undefined) keys.set(text, (key = normalise(text)));
  return key;
};
const dump = () => {
  const byKey = new Map();
  for (const [text, n] of counts) {
    const key = keyOf(text);
    byKey.set(key, (byKey.get(key) || 0) + n);
  }
  fs.writeFileSync(
    path.join(dir, `queries-${process.pid}.txt`),
    [...byKey].sort((a, b) => b[1] - a[1]).map(([text, n]) => `${n}\t${text}`).join('\n') + '\n',
  );
};
setInterval(dump, 2000).unref();
process.on('exit', dump);
