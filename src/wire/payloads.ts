/**
 * Pure parsers and formatters for Boxel's NOTIFY payloads (DESIGN §3). Parsers never throw:
 * a malformed payload yields `undefined`, and the caller counts and logs it.
 */
import { z } from 'zod';
import {
  MAX_NOTIFY_PAYLOAD_BYTES,
  MODULE_INVALIDATION_CHUNK_BYTES,
  REALM_FILE_CHANGES_WILDCARD,
} from './channels.js';

export interface RealmFileChange {
  realmURL: string;
  /** A realm-local path, or `'*'` for every path of the realm. */
  path: string;
}

/**
 * `<realmURL>:<localPath>` → `{ realmURL, path }`. Splits at the first `/:`, so scheme and port
 * colons never match (`http://host:4201/a/:x.gts`) and prefix forms parse
 * (`@cardstack/base/:card-api.gts`). No `/:`, or an empty path, is malformed.
 */
export function parseRealmFileChangePayload(payload: string): RealmFileChange | undefined {
  if (typeof payload !== 'string') return undefined;
  const split = payload.indexOf('/:');
  if (split < 0) return undefined;
  const realmURL = payload.slice(0, split + 1);
  const path = payload.slice(split + 2);
  if (path.length === 0) return undefined;
  return { realmURL, path };
}

/**
 * Why a per-path change's path cannot be matched as written, or `undefined` when it is a
 * canonical realm-local path. Boxel's `LocalPath` is relative (no leading `/`), has no `.`/`..`
 * or empty segments, and Boxel looks it up in its caches as an exact, case-sensitive key — so a
 * path like `/index.json`, `index.json\n` or `a//b` drops nothing there. The listener counts
 * these and drops the realm's whole cache instead (a superset is always safe).
 */
export type LocalPathMismatch =
  | 'surrounding-whitespace'
  | 'control-character'
  | 'leading-slash'
  | 'trailing-slash'
  | 'backslash'
  | 'empty-segment'
  | 'dot-segment';

export function localPathMismatch(path: string): LocalPathMismatch | undefined {
  if (path !== path.trim()) return 'surrounding-whitespace';
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'control-character';
  if (path.startsWith('/')) return 'leading-slash';
  if (path.endsWith('/')) return 'trailing-slash';
  if (path.includes('\\')) return 'backslash';
  const segments = path.split('/');
  if (segments.some((segment) => segment === '')) return 'empty-segment';
  if (segments.some((segment) => segment === '.' || segment === '..')) return 'dot-segment';
  return undefined;
}

export function isWildcardChange(change: RealmFileChange): boolean {
  return change.path === REALM_FILE_CHANGES_WILDCARD;
}

export function formatRealmFileChangePayload(realmURL: string, path: string): string {
  return checkedPayload(`${realmURL}:${path}`);
}

export function formatAllFileChangesPayload(realmURL: string): string {
  return formatRealmFileChangePayload(realmURL, REALM_FILE_CHANGES_WILDCARD);
}

const moduleInvalidationSchema = z.discriminatedUnion('k', [
  z.object({ k: z.literal('realm'), r: z.string().min(1) }),
  z.object({ k: z.literal('module'), r: z.string().min(1), m: z.array(z.string().min(1)).min(1) }),
  z.object({ k: z.literal('global') }),
]);

export type ModuleCacheInvalidation =
  | { kind: 'realm'; realmURL: string }
  | { kind: 'module'; realmURL: string; moduleURLs: string[] }
  | { kind: 'global' };

/** Parses a `module_cache_invalidated` payload; `undefined` when it is not one of the three forms. */
export function parseModuleCacheInvalidation(payload: string): ModuleCacheInvalidation | undefined {
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    return undefined;
  }
  const parsed = moduleInvalidationSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const value = parsed.data;
  switch (value.k) {
    case 'realm':
      return { kind: 'realm', realmURL: value.r };
    case 'module':
      return { kind: 'module', realmURL: value.r, moduleURLs: value.m };
    case 'global':
      return { kind: 'global' };
  }
}

export function formatRealmDefinitionsInvalidation(realmURL: string): string {
  return checkedPayload(JSON.stringify({ k: 'realm', r: realmURL }));
}

export function formatGlobalDefinitionsInvalidation(): string {
  return JSON.stringify({ k: 'global' });
}

/**
 * Splits a module invalidation into payloads of at most `budgetBytes` each, as Boxel does, so a
 * realm with thousands of modules never exceeds the NOTIFY limit.
 */
export function chunkModuleInvalidations(
  realmURL: string,
  moduleURLs: readonly string[],
  budgetBytes = MODULE_INVALIDATION_CHUNK_BYTES,
): string[] {
  const frame = (m: string[]) => JSON.stringify({ k: 'module', r: realmURL, m });
  const chunks: string[] = [];
  let current: string[] = [];
  for (const moduleURL of moduleURLs) {
    const candidate = [...current, moduleURL];
    if (Buffer.byteLength(frame(candidate)) <= budgetBytes) {
      current = candidate;
      continue;
    }
    if (current.length === 0) {
      throw new Error(`module URL ${JSON.stringify(moduleURL.slice(0, 80))}… alone exceeds the ${budgetBytes}-byte NOTIFY budget`);
    }
    chunks.push(frame(current));
    current = [moduleURL];
    if (Buffer.byteLength(frame(current)) > budgetBytes) {
      throw new Error(`module URL ${JSON.stringify(moduleURL.slice(0, 80))}… alone exceeds the ${budgetBytes}-byte NOTIFY budget`);
    }
  }
  if (current.length > 0) chunks.push(frame(current));
  return chunks;
}

export type RealmRegistryChange = { op: 'upsert' | 'delete'; realmURL: string };

/**
 * `upsert:<url>` / `delete:<url>` → `{ op, realmURL }`; anything else is malformed — which says
 * nothing about whether the registry changed: a listener re-reads it on every notification.
 */
export function parseRealmRegistryPayload(payload: string): RealmRegistryChange | undefined {
  if (typeof payload !== 'string') return undefined;
  const match = /^(upsert|delete):(.+)$/s.exec(payload);
  if (!match) return undefined;
  return { op: match[1] as 'upsert' | 'delete', realmURL: match[2]! };
}

export function formatRealmRegistryPayload(op: 'upsert' | 'delete', realmURL: string): string {
  return checkedPayload(`${op}:${realmURL}`);
}

/** Refuses, before it reaches PostgreSQL, a payload that NOTIFY would reject. */
function checkedPayload(payload: string): string {
  const bytes = Buffer.byteLength(payload, 'utf8');
  if (bytes > MAX_NOTIFY_PAYLOAD_BYTES) {
    throw new Error(`NOTIFY payload is ${bytes} bytes; PostgreSQL accepts at most ${MAX_NOTIFY_PAYLOAD_BYTES}`);
  }
  return payload;
}
