/**
 * A {@link KubeConnection} from a kubeconfig file or the in-cluster service account, without
 * @kubernetes/client-node: for tools and tests that do not want it (2.x pulls in undici 8),
 * and to point a copy of a connection at another address (`new StaticKubeConnection({...settings, server})`).
 *
 * Supports what an operator and its tests need: `server`, `certificate-authority[-data]`,
 * `insecure-skip-tls-verify`, `tls-server-name`, `client-certificate[-data]` and
 * `client-key[-data]`, `token` and `tokenFile`, `username`/`password`. Not supported: exec and
 * auth-provider plugins, proxies — pass a client-node `KubeConfig` for those.
 *
 * Guarantees: a token file is read again once what was read is {@link TOKEN_FILE_MAX_AGE_MS} old
 * (client-go's cached file token source: re-read every minute less 10 s of leeway), so rotated
 * service-account tokens are picked up long before the old one expires (the kubelet rotates a
 * projected token at 80 % of its lifetime, at least 10 minutes); one keep-alive agent per connection.
 *
 * Errors: loading throws for a missing context, cluster or user, and for unreadable files.
 */
import fs from 'node:fs';
import type { Agent, OutgoingHttpHeaders } from 'node:http';
import type { AgentOptions, RequestOptions } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import type { KubeConnection } from './kube-client.js';
import { http, https } from './node-http.js';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * How long a token read from a file is used before the file is read again. Reading it for every
 * request cost four thread-pool round trips (open, stat, read, close) per API request.
 */
export const TOKEN_FILE_MAX_AGE_MS = 50_000;

interface ClusterEntry {
  server?: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
}

interface UserEntry {
  token?: string;
  tokenFile?: string;
  'client-certificate'?: string;
  'client-certificate-data'?: string;
  'client-key'?: string;
  'client-key-data'?: string;
  username?: string;
  password?: string;
  exec?: unknown;
  'auth-provider'?: unknown;
}

interface KubeconfigDocument {
  'current-context'?: string;
  contexts?: Array<{ name: string; context?: { cluster?: string; user?: string; namespace?: string } }>;
  clusters?: Array<{ name: string; cluster?: ClusterEntry }>;
  users?: Array<{ name: string; user?: UserEntry }>;
}

export interface ResolvedConnection {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecureSkipTLSVerify?: boolean;
  tlsServerName?: string;
  token?: string;
  tokenFile?: string;
  username?: string;
  password?: string;
  /** The context's default namespace, if any. */
  namespace?: string;
}

/** A connection from resolved settings; `loadKubeconfig` and `inClusterConnection` build one. */
export class StaticKubeConnection implements KubeConnection {
  readonly settings: ResolvedConnection;
  private readonly agent: Agent;
  private readonly now: () => number;
  /** The token file's content and when it was read (monotonic ms); a read in flight is shared. */
  private tokenRead: { token: Promise<string>; at: number } | undefined;

  /** `now`: monotonic milliseconds, for the token file's age (tests pass a clock). */
  constructor(settings: ResolvedConnection, now: () => number = () => performance.now()) {
    this.settings = settings;
    this.now = now;
    this.agent = settings.server.startsWith('http:')
      ? new http.Agent({ keepAlive: true })
      : new https.Agent({ keepAlive: true, ...this.tls() });
  }

  getCurrentCluster(): { server: string } {
    return { server: this.settings.server };
  }

  async applyToHTTPSOptions(options: RequestOptions): Promise<void> {
    Object.assign(options, this.tls());
    options.agent = this.agent;
    const headers = (options.headers ??= {}) as OutgoingHttpHeaders;
    const { tokenFile, token, username, password } = this.settings;
    const bearer = tokenFile ? await this.tokenFromFile(tokenFile) : token;
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    else if (username) options.auth = `${username}:${password ?? ''}`;
  }

  /** Closes idle keep-alive sockets. */
  destroy(): void {
    this.agent.destroy();
  }

  private tokenFromFile(file: string): Promise<string> {
    const now = this.now();
    if (!this.tokenRead || now - this.tokenRead.at >= TOKEN_FILE_MAX_AGE_MS) {
      const read = fs.promises.readFile(file, 'utf8').then((text) => text.trim());
      const entry = { token: read, at: now };
      this.tokenRead = entry;
      // A failed read is not kept: the next request reads the file again.
      read.catch(() => {
        if (this.tokenRead === entry) this.tokenRead = undefined;
      });
    }
    return this.tokenRead.token;
  }

  private tls(): AgentOptions {
    const { ca, cert, key, insecureSkipTLSVerify, tlsServerName } = this.settings;
    return {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(insecureSkipTLSVerify ? { rejectUnauthorized: false } : {}),
      ...(tlsServerName ? { servername: tlsServerName } : {}),
    };
  }
}

/** Loads `file` (its current context, or `context`). Relative paths inside are relative to the file. */
export function loadKubeconfig(file: string, context?: string): StaticKubeConnection {
  return parseKubeconfig(fs.readFileSync(file, 'utf8'), path.dirname(path.resolve(file)), context);
}

export function parseKubeconfig(text: string, baseDir: string, contextName?: string): StaticKubeConnection {
  const doc = (YAML.parse(text) ?? {}) as KubeconfigDocument;
  const name = contextName ?? doc['current-context'];
  const context = doc.contexts?.find((c) => c.name === name)?.context;
  if (!context) throw new Error(`kubeconfig has no context ${JSON.stringify(name)}`);
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster?.server) throw new Error(`kubeconfig context ${name} names no cluster with a server`);
  const user = doc.users?.find((u) => u.name === context.user)?.user ?? {};
  if (user.exec || user['auth-provider']) throw new Error('exec and auth-provider credentials need a @kubernetes/client-node KubeConfig');
  const read = (file?: string, data?: string) =>
    data ? Buffer.from(data, 'base64') : file ? fs.readFileSync(path.resolve(baseDir, file)) : undefined;
  const settings: ResolvedConnection = { server: cluster.server };
  const ca = read(cluster['certificate-authority'], cluster['certificate-authority-data']);
  const cert = read(user['client-certificate'], user['client-certificate-data']);
  const key = read(user['client-key'], user['client-key-data']);
  if (ca) settings.ca = ca;
  if (cert) settings.cert = cert;
  if (key) settings.key = key;
  if (cluster['insecure-skip-tls-verify']) settings.insecureSkipTLSVerify = true;
  if (cluster['tls-server-name']) settings.tlsServerName = cluster['tls-server-name'];
  if (user.token) settings.token = user.token;
  if (user.tokenFile) settings.tokenFile = path.resolve(baseDir, user.tokenFile);
  if (user.username) settings.username = user.username;
  if (user.password) settings.password = user.password;
  if (context.namespace) settings.namespace = context.namespace;
  return new StaticKubeConnection(settings);
}

/** The pod's service account, as client-go's `rest.InClusterConfig`. */
export function inClusterConnection(env: NodeJS.ProcessEnv = process.env): StaticKubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error('not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset');
  const namespaceFile = path.join(SERVICE_ACCOUNT_DIR, 'namespace');
  return new StaticKubeConnection({
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: fs.readFileSync(path.join(SERVICE_ACCOUNT_DIR, 'ca.crt')),
    tokenFile: path.join(SERVICE_ACCOUNT_DIR, 'token'),
    ...(fs.existsSync(namespaceFile) ? { namespace: fs.readFileSync(namespaceFile, 'utf8').trim() } : {}),
  });
}

/**
 * client-go's (and client-node's `loadFromDefault`) order without client-node: `$KUBECONFIG`,
 * else `~/.kube/config`, else the pod's service account. `undefined` when that needs client-node
 * (several files in `$KUBECONFIG` to merge, exec or auth-provider credentials) or finds nothing:
 * the caller then loads client-node. Why: client-node 2 alone adds ~55 MB to the operator's RSS.
 */
export function loadDefaultConnection(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): StaticKubeConnection | undefined {
  const files = (env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean);
  const file = files.length > 0 ? files : [path.join(home, '.kube', 'config')].filter((f) => fs.existsSync(f));
  try {
    if (file.length > 1) return undefined;
    if (file.length === 1) return loadKubeconfig(file[0]!);
    return env.KUBERNETES_SERVICE_HOST ? inClusterConnection(env) : undefined;
  } catch (error) {
    if ((error as Error).message.includes('need a @kubernetes/client-node KubeConfig')) return undefined;
    throw error;
  }
}
