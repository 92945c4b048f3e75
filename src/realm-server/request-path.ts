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
 * Where a realm-local part of a checked pathname leads: Boxel's `LocalPath` for it (the file's
 * path below the realm directory, and the cache key), or why there is none.
 */
export type LocalPathResult =
  | { ok: true; localPath: string }
  /** The realm root or a directory (trailing `/`): the server serves files only (404). */
  | { ok: false; refusal: 'directory' }
  /** Boxel itself cannot map the path to a file (400). */
  | { ok: false; refusal: 'not-mappable' };

export const NOT_MAPPABLE_MESSAGE =
  'the path names no realm file as Boxel maps paths (it decodes the path twice with decodeURI; a literal "%" in a file name, or an escape that decodes to ".", "..", "\\" or a control character, cannot be mapped)';

/**
 * Boxel's `LocalPath` for the still-encoded realm-local part of a request path, so that the key
 * a request fills the cache under is exactly the path Boxel's emitters put in a per-path
 * `realm_file_changes` payload (Boxel's realm writes NOTIFY `<realm URL>:<LocalPath>`, and its
 * source cache is keyed by the same `LocalPath`), and the file read is the one Boxel would read.
 *
 * Boxel's `RealmPaths.local()` (packages/runtime-common/paths.ts) takes a request URL's
 * pathname through `decodeURI`, re-parses it as a URL (which re-escapes spaces, non-ASCII and
 * other characters a path may not hold) and `decodeURI`s the result again. So spaces and
 * non-ASCII arrive decoded (`a%20b.json` → `a b.json`, `%C3%A9.json` → `é.json`), while the
 * escapes `decodeURI` keeps — those of `# ? ; , / : @ & = + $` — stay escaped, exactly as written
 * (`x%23y.json` → `x%23y.json`: Boxel's file on disk is named `x%23y.json`). A literal `%`
 * (`100%25.json`) makes Boxel's second decode fail: Boxel serves no such file, and neither do we.
 * Mapped per segment: `decodeURI` never joins or splits segments, and dot segments (which the
 * URL parser would resolve away, renaming the file) are refused.
 */
export function boxelLocalPath(encodedLocal: string): LocalPathResult {
  if (encodedLocal === '' || encodedLocal.endsWith('/')) return { ok: false, refusal: 'directory' };
  const localPath = boxelDecode(encodedLocal);
  return localPath === undefined ? { ok: false, refusal: 'not-mappable' } : { ok: true, localPath };
}

/** A URL parser's single- and double-dot segments (`.`, `%2e`, `..`, `.%2E`, …). */
const URL_DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;
/** What the URL parser would strip, split at or cut off rather than keep as a file name. */
const PARSER_SIGNIFICANT = /[\u0000-\u001f\u007f\\?#]/;

function boxelDecode(encodedLocal: string): string | undefined {
  let once: string;
  let local: string;
  try {
    once = decodeURI(encodedLocal);
    // Refused where the re-parse would not keep the segments as written: dot segments are
    // resolved away, `\` separates, tabs and newlines are dropped, `?`/`#` end the path.
    if (PARSER_SIGNIFICANT.test(once) || once.split('/').some((s) => s === '' || URL_DOT_SEGMENT.test(s))) return undefined;
    // The whole local part at once, as Boxel re-parses the whole path (so trailing spaces of the
    // last segment are trimmed as Boxel trims them); path-absolute, so a `:` is never a scheme.
    local = decodeURI(new URL(`/${once}`, 'http://realm.invalid').pathname.slice(1));
  } catch {
    return undefined;
  }
  const segments = local.split('/');
  // The second decode may yield a control character or a backslash (`%255C`): never a file name here.
  if (segments.some((s) => s === '' || s === '.' || s === '..') || /[\u0000-\u001f\u007f\\]/.test(local)) return undefined;
  return local;
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
