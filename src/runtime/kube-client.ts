/**
 * The runtime's only HTTP code: one JSON request, or one watch stream, to the Kubernetes API by
 * path, over `node:https`.
 *
 * Why not client-node's `Watch` and typed APIs: the runtime must behave the same whichever
 * client-node major is installed, and neither fits an informer well: 1.x has no inactivity limit
 * at all (a half-open connection hangs until TCP gives up), 2.x aborts any stream silent for 30 s
 * (a private timer that fights our watchdog) and, running on undici 8, cannot even be imported on
 * Node < 22.19; both swallow exceptions thrown by the event callback. Their typed clients turn
 * timestamps into `Date`s (MicroTime fields lose their microseconds), while the informer must
 * cache objects exactly as the server sent them. So this module imports no client-node values;
 * authentication comes from {@link KubeConnection}, which a client-node `KubeConfig` satisfies
 * as it is (its `applyToHTTPSOptions` handles exec plugins, OIDC, proxies...) and which
 * `loadKubeconfig()` provides without client-node.
 *
 * Errors: a non-2xx response rejects with {@link KubeApiError}, carrying the HTTP status and the
 * `Status` body's `reason`/`message`. Transport failures reject with Node's errors
 * (`ECONNREFUSED`, `ECONNRESET`, ...), an abort with an `AbortError`.
 */
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { RequestOptions } from 'node:https';
import { readFileSync } from 'node:fs';
// Through require, not an ESM import: see node-http.ts (an import loads undici, +4-5 MB RSS).
import { http, https } from './node-http.js';

/**
 * Sent with every request. The API server names a writer's field manager after the part of its
 * User-Agent before the first '/' (as client-go's default `<binary>/<version> (<os>/<arch>) …`
 * does), so the operator's writes show in managedFields as `realm-operator`, not `unknown`.
 */
export const KUBE_USER_AGENT = `realm-operator/${packageVersion()} (${process.platform}/${process.arch}) node/${process.version}`;

function packageVersion(): string {
  try {
    // dist/runtime/ and src/runtime/ both sit two levels under the package's package.json.
    const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version;
    return typeof version === 'string' && /^[0-9A-Za-z.+-]{1,64}$/.test(version) ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * What the runtime needs to reach and authenticate to the API server. A client-node `KubeConfig`
 * is one; so is what `loadKubeconfig()` returns.
 */
export interface KubeConnection {
  getCurrentCluster(): { server: string } | null;
  /** Adds TLS material, an `Authorization` header and an agent to `options`. */
  applyToHTTPSOptions(options: RequestOptions): Promise<void>;
}

export interface KubeRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Absolute API path, e.g. `/api/v1/namespaces/default/configmaps`. */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  /** Serialized as JSON. */
  body?: unknown;
  /** Default `application/json`; `application/merge-patch+json` etc. for PATCH. */
  contentType?: string;
  signal?: AbortSignal;
}

/** A `Status` object, as the API server returns it for failures. */
export interface KubeStatus {
  kind?: 'Status';
  status?: string;
  code?: number;
  reason?: string;
  message?: string;
  details?: unknown;
}

/** A non-2xx answer from the API server (or an ERROR event on a watch). */
export class KubeApiError extends Error {
  readonly statusCode: number;
  /** `Status.reason`: `NotFound`, `AlreadyExists`, `Conflict`, `Expired`, `Gone`, ... */
  readonly reason: string | undefined;
  readonly status: KubeStatus | undefined;

  constructor(statusCode: number, status: KubeStatus | undefined, what: string) {
    super(`${what}: HTTP ${statusCode}${status?.reason ? ` ${status.reason}` : ''}${status?.message ? `: ${status.message}` : ''}`);
    this.name = 'KubeApiError';
    this.statusCode = statusCode;
    this.reason = status?.reason;
    this.status = status;
  }
}

/**
 * Watches a collection: `callback(type, object)` for each event, then `done(error | null)` exactly
 * once — `null` when the server ended the stream normally. The shape of client-node's `Watch`, so
 * one can be passed wherever a `WatchLike` is expected.
 */
export interface WatchLike {
  watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    // `any` to match client-node's Watch signature, which is assignable here then.
    callback: (type: string, object: any, event?: any) => void,
    done: (error: any) => void,
  ): Promise<AbortController>;
}

/** Sends one request and returns the parsed JSON body (`undefined` if empty). */
export async function kubeRequest<T = unknown>(connection: KubeConnection, request: KubeRequest): Promise<T> {
  const method = request.method ?? 'GET';
  const payload = request.body === undefined ? undefined : JSON.stringify(request.body);
  const { url, options } = await prepare(connection, method, request.path, request.query);
  if (payload !== undefined) {
    options.headers!['content-type'] = request.contentType ?? 'application/json';
    options.headers!['content-length'] = Buffer.byteLength(payload);
  }
  const { statusCode, body } = await new Promise<{ statusCode: number; body: string }>((resolve, reject) => {
    const req = send(url, { ...options, ...(request.signal ? { signal: request.signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
  const parsed = parseJSON(body);
  if (statusCode < 200 || statusCode > 299) {
    throw new KubeApiError(statusCode, isStatus(parsed) ? parsed : { message: body.slice(0, 500) }, `${method} ${request.path}`);
  }
  return parsed as T;
}

/** A {@link WatchLike} over `connection`. */
export function kubeWatch(connection: KubeConnection): WatchLike {
  return {
    async watch(path, query, callback, done) {
      const controller = new AbortController();
      const { url, options } = await prepare(connection, 'GET', path, { ...query, watch: true });
      let finished = false;
      const finish = (error: unknown) => {
        if (finished) return;
        finished = true;
        controller.abort();
        done(error ?? null);
      };
      const req = send(url, { ...options, signal: controller.signal }, (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            const parsed = parseJSON(body);
            finish(new KubeApiError(res.statusCode ?? 0, isStatus(parsed) ? parsed : { message: body.slice(0, 500) }, `watch ${path}`));
          });
          res.on('error', finish);
          return;
        }
        res.setEncoding('utf8');
        let buffered = '';
        res.on('data', (chunk: string) => {
          // The unfinished line so far has no newline: search only the new text, and cut the
          // buffer once per chunk (a chunk holds many events when a thousand objects change at once).
          let from = buffered.length;
          buffered += chunk;
          let start = 0;
          for (let newline = buffered.indexOf('\n', from); newline >= 0 && !finished; newline = buffered.indexOf('\n', from)) {
            const line = buffered.slice(start, newline).trim();
            start = from = newline + 1;
            if (!line) continue;
            let event: { type?: string; object?: unknown };
            try {
              event = JSON.parse(line) as typeof event;
            } catch (error) {
              finish(new Error(`malformed watch event: ${line.slice(0, 200)}`, { cause: error }));
              return;
            }
            try {
              callback(event.type ?? '', event.object, event);
            } catch (error) {
              // Unlike client-node's Watch, a throwing callback ends the watch with that error.
              finish(error);
              return;
            }
          }
          buffered = buffered.slice(start);
        });
        res.on('end', () => finish(null));
        res.on('error', finish);
        // A connection that drops mid-stream closes the response without 'end'.
        res.on('close', () => finish(new Error('watch connection closed before the stream ended')));
      });
      req.on('error', finish);
      req.end();
      return controller;
    },
  };
}

/** The HTTP status of an error from this module, client-node's `ApiException` or its `Watch`. */
export function statusCodeOf(error: unknown): number | undefined {
  if (error instanceof KubeApiError) return error.statusCode;
  if (typeof error !== 'object' || error === null) return undefined;
  const candidate = error as { statusCode?: unknown; code?: unknown };
  // client-node's Watch uses `statusCode`, its ApiException a numeric `code` (Node's own errors use string codes).
  if (typeof candidate.statusCode === 'number') return candidate.statusCode;
  if (typeof candidate.code === 'number') return candidate.code;
  return undefined;
}

async function prepare(
  connection: KubeConnection,
  method: string,
  path: string,
  query: Record<string, string | number | boolean | undefined> = {},
): Promise<{ url: URL; options: RequestOptions & { headers: OutgoingHttpHeaders } }> {
  const cluster = connection.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(name, String(value));
  }
  const options: RequestOptions & { headers: OutgoingHttpHeaders } = { method, headers: { accept: 'application/json', 'user-agent': KUBE_USER_AGENT } };
  await connection.applyToHTTPSOptions(options);
  return { url, options };
}

function send(url: URL, options: RequestOptions, onResponse: (res: IncomingMessage) => void): ClientRequest {
  return url.protocol === 'http:' ? http.request(url, options, onResponse) : https.request(url, options, onResponse);
}

function parseJSON(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function isStatus(value: unknown): value is KubeStatus {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'Status';
}
