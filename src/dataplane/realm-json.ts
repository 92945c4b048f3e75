/**
 * The published copy's `realm.json` opt-in, as Boxel's publish handler writes it
 * (`ensureRealmIndexBoilerplateOptIn` in cardstack/boxel
 * packages/realm-server/handlers/handle-publish-realm.ts): when the realm's `index.json` adopts
 * one of the base default index cards (CardsGrid or Workspace), `realm.json` gets
 * `data.attributes.includePrerenderedDefaultRealmIndex: true`, so the indexer prerenders the
 * homepage. Only the published copy is changed, never the source. Anything unreadable or
 * unparsable is left alone, as Boxel does.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/** The base cards Boxel treats as a default realm index, each under both module forms it lists. */
const DEFAULT_REALM_INDEX_ADOPTIONS: ReadonlyArray<{ name: string; modules: ReadonlySet<string> }> = [
  { name: 'CardsGrid', modules: new Set(['https://cardstack.com/base/cards-grid', '@cardstack/base/cards-grid']) },
  { name: 'Workspace', modules: new Set(['https://cardstack.com/base/workspace', '@cardstack/base/workspace']) },
];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether a parsed `index.json` adopts a default index card (`data.meta.adoptsFrom` = {module, name}, both strings). */
export function adoptsDefaultRealmIndex(indexDoc: unknown): boolean {
  const data = isObject(indexDoc) ? indexDoc.data : undefined;
  const meta = isObject(data) ? data.meta : undefined;
  const adoptsFrom = isObject(meta) ? meta.adoptsFrom : undefined;
  if (!isObject(adoptsFrom) || typeof adoptsFrom.module !== 'string' || typeof adoptsFrom.name !== 'string') return false;
  const { module, name } = adoptsFrom;
  return DEFAULT_REALM_INDEX_ADOPTIONS.some((adoption) => adoption.name === name && adoption.modules.has(module));
}

/**
 * The `realm.json` document with the opt-in set, or undefined when it is already set or the
 * document is not an object. Keeps every other field as it was.
 */
export function withPrerenderedDefaultIndexOptIn(realmDoc: unknown): Record<string, unknown> | undefined {
  if (!isObject(realmDoc)) return undefined;
  const data = isObject(realmDoc.data) ? realmDoc.data : {};
  const attributes = isObject(data.attributes) ? data.attributes : {};
  if (attributes.includePrerenderedDefaultRealmIndex === true) return undefined;
  return { ...realmDoc, data: { ...data, attributes: { ...attributes, includePrerenderedDefaultRealmIndex: true } } };
}

export interface RealmJsonOptIn {
  /** sha256 (hex) of the `realm.json` written. */
  contentHash: string;
  /** New size minus old size, in bytes. */
  byteDelta: number;
}

async function readJsonFile(file: string): Promise<{ doc: unknown; size: number } | undefined> {
  // Only a regular file: a staged symlink is left alone rather than followed.
  const stat = await fs.lstat(file).catch(() => undefined);
  if (!stat?.isFile()) return undefined;
  try {
    return { doc: JSON.parse(await fs.readFile(file, 'utf8')) as unknown, size: stat.size };
  } catch {
    return undefined;
  }
}

/**
 * Applies the opt-in to a staged copy at `dir`. Writes the file the way Boxel's `writeJson(…,
 * { spaces: 2 })` does (two-space JSON and a trailing newline), keeping its mode, through a
 * rename so a crash leaves the old or the new file. Returns what changed, or undefined.
 */
export async function applyRealmIndexOptIn(dir: string, options: { durable?: boolean } = {}): Promise<RealmJsonOptIn | undefined> {
  const index = await readJsonFile(path.join(dir, 'index.json'));
  if (!index || !adoptsDefaultRealmIndex(index.doc)) return undefined;
  const realmJsonPath = path.join(dir, 'realm.json');
  const realm = await readJsonFile(realmJsonPath);
  if (!realm) return undefined;
  const updated = withPrerenderedDefaultIndexOptIn(realm.doc);
  if (!updated) return undefined;
  const text = `${JSON.stringify(updated, null, 2)}\n`;
  const { mode } = await fs.stat(realmJsonPath);
  // A name no source file has (it is random), removed with the staged copy if anything fails.
  const scratch = path.join(dir, `.realm.json.opt-in-${randomBytes(8).toString('hex')}`);
  const handle = await fs.open(scratch, 'wx', mode & 0o7777);
  try {
    await handle.writeFile(text);
    if (options.durable ?? true) await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.chmod(scratch, mode & 0o7777);
  await fs.rename(scratch, realmJsonPath);
  return { contentHash: createHash('sha256').update(text).digest('hex'), byteDelta: Buffer.byteLength(text) - realm.size };
}

/**
 * The published content's digest after the opt-in: the staged tree's digest combined with the
 * rewritten `realm.json`, so it differs from the source's whenever the published copy does.
 */
export function digestWithOptIn(stagedDigest: string, optIn: RealmJsonOptIn | undefined): string {
  if (!optIn) return stagedDigest;
  return `sha256:${createHash('sha256').update(`${stagedDigest}\nrealm.json ${optIn.contentHash}`).digest('hex')}`;
}
