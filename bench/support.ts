/** Shared set-up for benchmarks: a real PostgreSQL (DATABASE_URL or embedded) and a migrated database. */
import { startEmbeddedPostgres, type PostgresServer } from '../test/support/embedded-postgres.js';
import { createTestDatabase, type TestDatabase } from '../test/support/database.js';

export async function benchDatabase(): Promise<{ db: TestDatabase; close(): Promise<void> }> {
  let server: PostgresServer | undefined;
  let admin = process.env.DATABASE_URL;
  if (!admin) {
    server = await startEmbeddedPostgres();
    admin = server.adminURL;
  }
  const db = await createTestDatabase({ admin });
  return {
    db,
    async close() {
      try {
        await db.drop();
      } finally {
        // Also when the database is already gone (Ctrl-C reaches PostgreSQL first).
        await server?.destroy();
      }
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function fmt(ms: number): string {
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The fan-out floors' channels (bench/fanout-child.ts raw mode): one per floor, so a round wakes only its fleet. */
export const RECEIVE_FLOOR_CHANNEL = 'bench_fanout_receive';
export const ACK_FLOOR_CHANNEL = 'bench_fanout_ack';
/** Receive, write the ack row and NOTIFY the publisher back on {@link TOLD_CHANNEL} in the same statement. */
export const TELL_FLOOR_CHANNEL = 'bench_fanout_tell';
export const TOLD_CHANNEL = 'bench_fanout_told';

export function median(values: number[]): number {
  return percentile(values, 50);
}
