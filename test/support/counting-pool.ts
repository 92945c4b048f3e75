/**
 * A real `pg` pool whose clients count every statement they send: what a publish or a reconcile
 * costs PostgreSQL, in round trips. `BEGIN; …` (one round trip) counts once, and as a transaction.
 */
import pg from 'pg';
import { createPool } from '../../src/dataplane/db.js';

export interface CountingPool {
  pool: pg.Pool;
  counts: () => { statements: number; transactions: number };
  /** The statements sent since the last reset, by their first 60 characters (for failure messages). */
  texts: () => string[];
  reset: () => void;
}

export function countingPool(url: string, max = 4): CountingPool {
  let statements = 0;
  let transactions = 0;
  let texts: string[] = [];
  const pool = createPool({ connectionString: url, max }, () => undefined);
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      statements += 1;
      const text = typeof args[0] === 'string' ? args[0] : ((args[0] as { text?: string }).text ?? '');
      texts.push(text.replace(/\s+/g, ' ').slice(0, 60));
      if (/^BEGIN\b/.test(text)) transactions += 1;
      return query(...args);
    };
  });
  return {
    pool,
    counts: () => ({ statements, transactions }),
    texts: () => [...texts],
    reset: () => {
      statements = 0;
      transactions = 0;
      texts = [];
    },
  };
}
