/**
 * `realm-operator seed-sample`: migrates the database and registers a small sample source realm
 * (files under the realms root, its `realm_registry` row, and — as Boxel's create-realm writes
 * them — the owner's read/write/realm-owner permission as `@<owner>:<server name>` and
 * `realm_metadata.publishable = true`), so a fresh cluster or the demo has something the owner may
 * publish under the operator's authorization rules. Idempotent; existing files are left alone.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { RealmsLayout } from '../dataplane/layout.js';
import { migrate } from '../dataplane/migrations.js';
import { assertRealmURL } from '../wire/realm-url.js';

export const SAMPLE_FILES: Record<string, string> = {
  'index.json': JSON.stringify({ data: { type: 'card', attributes: { title: 'Hello from a published realm' } } }, null, 2),
  'blog-post.gts': "import { CardDef } from 'https://cardstack.com/base/card-api';\nexport class BlogPost extends CardDef {\n  static displayName = 'Blog Post';\n}\n",
  'posts/first.json': JSON.stringify({ data: { type: 'card', attributes: { title: 'First post', body: 'Published by realm-operator.' } } }, null, 2),
};

export async function seedSampleRealm(
  pool: pg.Pool,
  options: { realmsRoot: string; sourceURL: string; owner: string; matrixServerName?: string; onNotice?: (message: string) => void },
): Promise<{ directory: string; diskId: string }> {
  const url = assertRealmURL(options.sourceURL, '--source-url');
  await migrate(pool, options.onNotice ? { onNotice: options.onNotice } : {});
  const segments = new URL(url).pathname.split('/').filter(Boolean);
  const diskId = `${options.owner}/${segments.at(-1) ?? 'realm'}`;
  const directory = new RealmsLayout(options.realmsRoot).sourceDir(diskId);
  for (const [rel, content] of Object.entries(SAMPLE_FILES)) {
    const file = path.join(directory, rel);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, content, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
  await pool.query(
    `INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', $2, $3)
     ON CONFLICT (url) DO NOTHING`,
    [url, diskId, options.owner],
  );
  await pool.query(
    `INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, $2, true, true, true)
     ON CONFLICT DO NOTHING`,
    [url, `@${options.owner}:${options.matrixServerName ?? 'localhost'}`],
  );
  await pool.query(`INSERT INTO realm_metadata (url, publishable) VALUES ($1, true) ON CONFLICT (url) DO NOTHING`, [url]);
  return { directory, diskId };
}
