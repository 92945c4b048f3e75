/**
 * Request paths, checked before anything touches the registry or the disk (pure).
 *
 * A path is refused (400) when it could mean something other than one file below one realm: a
 * NUL or other control character, a backslash, a percent-encoded `/` or `\`, a `.` or `..`
 * segment (raw or encoded), an empty segment (`a//b`), malformed percent-encoding, or a
 * non-path request target. Refusals carry a reason for the client and the metrics, never a file
 * system path.
 */

export type PathRefusal =
  | 'not-a-path'
  | 'bad-encoding'
  | 'control-character'
  | 'backslash'
  | 'encoded-separator'
  | 'dot-segment'
  | 'empty-segment';

export const PATH_REFUSAL_MESSAGES: Record<PathRefusal, string> = {
  'not-a-path': 'the request target must be a path starting with "/"',
  'bad-encoding': 'the path has malformed percent-encoding',
  'control-character': 'the path contains a NUL or other control character',
  backslash: 'the path contains a backslash',
  'encoded-separator': 'the path contains a percent-encoded "/" or "\\"',
  'dot-segment': 'the path contains a "." or ".." segment',
  'empty-segment': 'the path contains an empty segment ("//")',
};

export type CheckedPath = { ok: true; pathname: string } | { ok: false; refusal: PathRefusal };

/**
 * Checks a raw request target (`req.url`): drops the query, and returns the still-encoded
 * pathname (registry URLs are stored encoded, so realms are matched on it) when it is acceptable.
 */
export function checkRequestPath(target: string): CheckedPath {
  const pathname = target.split(/[?#]/, 1)[0]!;
  if (!pathname.startsWith('/')) return { ok: false, refusal: 'not-a-path' };
  const segments = pathname.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const refusal = segmentRefusal(segments[i]!, i === segments.length - 1);
    if (refusal) return { ok: false, refusal };
  }
  return { ok: true, pathname };
}

function segmentRefusal(raw: string, last: boolean): PathRefusal | undefined {
  // The final segment may be empty: `/realm/` names the realm root (or a directory).
  if (raw === '') return last ? undefined : 'empty-segment';
  if (raw.includes('\\')) return 'backslash';
  if (/%(2f|5c)/i.test(raw)) return 'encoded-separator';
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return 'bad-encoding';
  }
  if (/[\u0000-\u001f\u007f]/.test(decoded)) return 'control-character';
  if (decoded === '.' || decoded === '..') return 'dot-segment';
  return undefined;
}

/**
 * The decoded segments of a realm-local part of a checked pathname (`cards/a%20b.json` →
 * `['cards', 'a b.json']`). Undefined for the realm root or a directory (trailing `/`): the
 * server serves files only.
 */
export function localSegments(encodedLocal: string): string[] | undefined {
  if (encodedLocal === '' || encodedLocal.endsWith('/')) return undefined;
  return encodedLocal.split('/').map((segment) => decodeURIComponent(segment));
}

/**
 * As Boxel's `inferContentType` (mime-types' table, with `.gts`/`.ts` overridden): the same file
 * gets the same type from either server.
 */
const CONTENT_TYPES: Record<string, string> = {
  gts: 'text/typescript+glimmer',
  ts: 'text/typescript',
  json: 'application/json',
  js: 'application/javascript',
  mjs: 'application/javascript',
  md: 'text/markdown',
  txt: 'text/plain',
  html: 'text/html',
  css: 'text/css',
  csv: 'text/csv',
  svg: 'image/svg+xml',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  ico: 'image/vnd.microsoft.icon',
  pdf: 'application/pdf',
  woff: 'font/woff',
  woff2: 'font/woff2',
};

/** The `content-type` for a served file, by extension; `application/octet-stream` when unknown. */
export function contentTypeFor(fileName: string): string {
  const dot = fileName.lastIndexOf('.');
  if (dot <= 0 || dot === fileName.length - 1) return 'application/octet-stream';
  return CONTENT_TYPES[fileName.slice(dot + 1).toLowerCase()] ?? 'application/octet-stream';
}
