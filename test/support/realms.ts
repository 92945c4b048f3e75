/** Fixtures: a realms root on disk, source realms registered in `realm_registry`, and a NOTIFY recorder. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import type { DataPlane } from '../../src/dataplane/publish.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export const silentLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A debug-level logger that keeps every line it writes, parsed. */
export function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

export async function makeRealmsRoot(): Promise<{ root: string; layout: RealmsLayout; cleanup(): Promise<void> }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'realms-'));
  return { root, layout: new RealmsLayout(root), cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

/** A migrated test database, a realms root and a data plane over both: what a data-plane suite starts from. */
export interface DataPlaneFixture {
  db: TestDatabase;
  realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
  layout: RealmsLayout;
  plane: DataPlane;
  close(): Promise<void>;
}

export async function openDataPlaneFixture(): Promise<DataPlaneFixture> {
  const db = await createTestDatabase();
  const realms = await makeRealmsRoot();
  return {
    db,
    realms,
    layout: realms.layout,
    plane: dataPlane(db.pool, realms.layout),
    async close() {
      await db.drop();
      await realms.cleanup();
    },
  };
}

export function dataPlane(pool: pg.Pool, layout: RealmsLayout, extra: Partial<DataPlane> = {}): DataPlane {
  return { pool, layout, logger: silentLogger, durable: false, ...extra };
}

/** The Matrix server name test source realms' owners live on. */
export const TEST_MATRIX_SERVER = 'localhost';
/** The Matrix user id of the owner `createSourceRealm` registers (`realm_registry.owner_username` is its bare `owner`). */
export const SOURCE_OWNER_USER_ID = `@owner:${TEST_MATRIX_SERVER}`;

/**
 * Writes `files` (path → content) under `<root>/<diskId>/` and registers the source realm as Boxel's
 * create-realm does (cardstack/boxel packages/realm-server/handlers/create-realm.ts): the bare owner
 * username in `realm_registry`, read + write + realm-owner for the owner's Matrix user id, and
 * `realm_metadata.publishable = true`.
 */
export async function createSourceRealm(
  pool: pg.Pool,
  layout: RealmsLayout,
  url: string,
  files: Record<string, string>,
  diskId = `owner/${path.basename(new URL(url).pathname)}-${Math.random().toString(36).slice(2, 8)}`,
): Promise<string> {
  const dir = layout.sourceDir(diskId);
  await fs.mkdir(dir, { recursive: true });
  await writeFiles(dir, files);
  await pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', $2, 'owner')`, [url, diskId]);
  await pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, $2, true, true, true)`, [
    url,
    SOURCE_OWNER_USER_ID,
  ]);
  // create-realm marks a new realm publishable in realm_metadata (Boxel's publish requires it).
  await pool.query(`INSERT INTO realm_metadata (url, publishable) VALUES ($1, true) ON CONFLICT (url) DO UPDATE SET publishable = true`, [url]);
  return dir;
}

/** A `boxel_index` row as Boxel's index writer leaves one (packages/runtime-common/index-writer.ts). */
export interface IndexEntry {
  url: string;
  realmURL: string;
  /** Boxel's index types: 'instance' or 'file'. Default 'instance'. */
  type?: 'instance' | 'file';
  /** Default 1. */
  generation?: number;
  isDeleted?: boolean | null;
  lastModified?: number | null;
  hasError?: boolean;
  errorDoc?: unknown;
}

/**
 * Inserts index entries with every column Boxel requires (`file_alias` as the writer forms it:
 * the URL without a `.json` suffix).
 */
export async function insertIndexEntries(pool: pg.Pool, entries: IndexEntry[]): Promise<void> {
  for (const e of entries) {
    await pool.query(
      `INSERT INTO boxel_index (url, file_alias, type, generation, realm_url, is_deleted, last_modified, has_error, error_doc)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)`,
      [
        e.url,
        e.url.replace(/\.json$/, ''),
        e.type ?? 'instance',
        e.generation ?? 1,
        e.realmURL,
        e.isDeleted ?? null,
        e.lastModified ?? null,
        e.hasError ?? false,
        e.errorDoc === undefined ? null : JSON.stringify(e.errorDoc),
      ],
    );
  }
}

export async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(dir, rel);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, content);
  }
}

/** Every regular file under `dir` (following the published symlink) as path → content. */
export async function readTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(current: string, rel: string) {
    for (const entry of await fs.readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      const r = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(full, r);
      else if (entry.isFile()) out[r] = await fs.readFile(full, 'utf8');
      else if (entry.isSymbolicLink()) out[`${r}@`] = await fs.readlink(full);
    }
  }
  await walk(dir, '');
  return out;
}

export interface RecordedNotification {
  channel: string;
  payload: string;
}

/** A real LISTEN connection that records everything on the given channels. */
export async function recordNotifications(url: string, channels: string[]): Promise<{
  received: RecordedNotification[];
  waitFor(predicate: (n: RecordedNotification) => boolean, timeoutMs?: number): Promise<RecordedNotification>;
  clear(): void;
  close(): Promise<void>;
}> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const received: RecordedNotification[] = [];
  const waiters: Array<() => void> = [];
  client.on('notification', (m) => {
    received.push({ channel: m.channel, payload: m.payload ?? '' });
    for (const w of waiters.splice(0)) w();
  });
  for (const channel of channels) await client.query(`LISTEN ${channel}`);
  return {
    received,
    async waitFor(predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = received.find(predicate);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`notification not received; got ${JSON.stringify(received)}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 50);
        });
      }
    },
    clear() {
      received.length = 0;
    },
    close: () => client.end(),
  };
}

/** Waits for `check` to hold, polling; throws with `describe()` after the timeout. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, describe = () => 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${describe()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
