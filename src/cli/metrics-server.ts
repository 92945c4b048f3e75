/**
 * The operator's `/metrics` endpoint, plain or secured like controller-runtime's secureServing
 * (`filters.WithAuthenticationAndAuthorization`): HTTPS, the caller's bearer token checked with a
 * TokenReview, then a SubjectAccessReview for `get` on the non-resource URL `/metrics`. Grant it
 * with the `realm-operator-metrics-reader` ClusterRole (deploy/base/metrics-rbac.yaml); the
 * operator itself needs `realm-operator-metrics-auth` (tokenreviews and subjectaccessreviews create).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import { kubeRequest, type KubeConnection } from '../runtime/kube-client.js';
import { prometheusExpositionParts } from '../runtime/metrics.js';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { parseBindAddress } from './operator-config.js';

export const METRICS_PATH = '/metrics';

/** What the API server said about one bearer token. */
export type AccessDecision = { status: 200; user: string } | { status: 401 | 403; reason: string };

/** Asks the API server who a token belongs to and whether that user may `get /metrics`. */
export interface AccessReviewer {
  authenticate(token: string): Promise<{ authenticated: false; error?: string } | { authenticated: true; user: ReviewedUser }>;
  authorize(user: ReviewedUser, verb: string, path: string): Promise<{ allowed: boolean; reason?: string }>;
}

export interface ReviewedUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface AccessCacheOptions {
  /** How long an allowed decision is reused. Default 60 s. */
  allowTtlMs?: number;
  /** How long a refusal is reused (short: a freshly granted RoleBinding should work soon). Default 10 s. */
  denyTtlMs?: number;
  /** Entries kept; the oldest go first. Default 1,024. */
  maxEntries?: number;
  now?: () => number;
}

/**
 * Decides whether an `Authorization` header may read `/metrics`, caching each decision briefly per
 * token (by its SHA-256, never the token) so a scraper every few seconds costs no API calls.
 * Errors reaching the API server are not cached and surface as a throw (the caller answers 500).
 */
export class MetricsAccess {
  private readonly cache = new Map<string, { decision: AccessDecision; expires: number }>();
  private readonly allowTtlMs: number;
  private readonly denyTtlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(
    private readonly reviewer: AccessReviewer,
    options: AccessCacheOptions = {},
  ) {
    this.allowTtlMs = options.allowTtlMs ?? 60_000;
    this.denyTtlMs = options.denyTtlMs ?? 10_000;
    this.maxEntries = options.maxEntries ?? 1024;
    this.now = options.now ?? Date.now;
  }

  async decide(authorization: string | undefined, verb = 'get', path = METRICS_PATH): Promise<AccessDecision> {
    const token = bearerToken(authorization);
    if (!token) return { status: 401, reason: 'no bearer token' };
    const key = createHash('sha256').update(`${verb} ${path} `).update(token).digest('hex');
    const cached = this.cache.get(key);
    if (cached && cached.expires > this.now()) return cached.decision;
    const decision = await this.review(token, verb, path);
    this.cache.delete(key);
    this.cache.set(key, { decision, expires: this.now() + (decision.status === 200 ? this.allowTtlMs : this.denyTtlMs) });
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    return decision;
  }

  private async review(token: string, verb: string, path: string): Promise<AccessDecision> {
    const authn = await this.reviewer.authenticate(token);
    if (!authn.authenticated) return { status: 401, reason: authn.error || 'token not authenticated' };
    const authz = await this.reviewer.authorize(authn.user, verb, path);
    if (!authz.allowed) return { status: 403, reason: `${authn.user.username} may not ${verb} ${path}${authz.reason ? `: ${authz.reason}` : ''}` };
    return { status: 200, user: authn.user.username };
  }
}

/** `Bearer <token>` → token (scheme case-insensitive, as RFC 6750 allows); anything else → undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  return match?.[1];
}

/** TokenReview and SubjectAccessReview through the operator's own Kubernetes credentials. */
export function kubeAccessReviewer(connection: KubeConnection): AccessReviewer {
  interface TokenReview {
    status?: { authenticated?: boolean; error?: string; user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> } };
  }
  interface SubjectAccessReview {
    status?: { allowed?: boolean; reason?: string };
  }
  return {
    async authenticate(token) {
      const review = await kubeRequest<TokenReview>(connection, {
        method: 'POST',
        path: '/apis/authentication.k8s.io/v1/tokenreviews',
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      });
      const status = review.status;
      if (!status?.authenticated || !status.user?.username) return { authenticated: false, ...(status?.error ? { error: status.error } : {}) };
      const { username, uid, groups, extra } = status.user;
      return { authenticated: true, user: { username, ...(uid ? { uid } : {}), ...(groups ? { groups } : {}), ...(extra ? { extra } : {}) } };
    },
    async authorize(user, verb, path) {
      const review = await kubeRequest<SubjectAccessReview>(connection, {
        method: 'POST',
        path: '/apis/authorization.k8s.io/v1/subjectaccessreviews',
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: { user: user.username, uid: user.uid, groups: user.groups, extra: user.extra, nonResourceAttributes: { verb, path } },
        },
      });
      return { allowed: review.status?.allowed === true, ...(review.status?.reason ? { reason: review.status.reason } : {}) };
    },
  };
}

export interface MetricsServerOptions {
  /** host:port, :port, or `0` for no server. */
  address: string;
  registry: Registry;
  logger: Logger;
  /** Serve HTTPS and require an authorized bearer token. */
  secure?: { access: MetricsAccess; certFile?: string; keyFile?: string };
}

/** Serves `/metrics` until closed; `undefined` when the address is `0`. */
export async function serveMetrics(options: MetricsServerOptions): Promise<http.Server | undefined> {
  const bind = parseBindAddress(options.address);
  if (!bind) return undefined;
  const { registry, logger, secure } = options;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if ((req.url ?? '').split('?')[0] !== METRICS_PATH) {
      res.writeHead(404).end();
      return;
    }
    const allowed = secure ? secure.access.decide(req.headers.authorization) : Promise.resolve<AccessDecision>({ status: 200, user: '' });
    allowed
      .then(async (decision) => {
        if (decision.status !== 200) {
          logger.debug({ status: decision.status, reason: decision.reason }, 'refused a metrics request');
          res.writeHead(decision.status, { 'content-type': 'text/plain' }).end(decision.status === 401 ? 'Unauthorized\n' : 'Forbidden\n');
          return;
        }
        // The state metrics' text is kept formatted between changes (see KeyedGauge) and sent as is.
        const parts = await prometheusExpositionParts(registry);
        res.writeHead(200, { 'content-type': registry.contentType, 'content-length': parts.reduce((length, part) => length + Buffer.byteLength(part), 0) });
        for (const part of parts) res.write(part);
        res.end();
      })
      .catch((error: Error) => {
        logger.warn({ err: error }, 'could not serve metrics');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('Internal Server Error\n');
      });
  };
  const server = secure ? https.createServer(await servingCertificate(secure, logger), handler) : http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(bind.port, bind.host, () => resolve());
  });
  logger.info({ address: server.address(), secure: Boolean(secure) }, 'serving metrics');
  return server;
}

async function servingCertificate(secure: { certFile?: string; keyFile?: string }, logger: Logger): Promise<{ cert: string; key: string }> {
  if (secure.certFile && secure.keyFile) {
    const [cert, key] = await Promise.all([fs.readFile(secure.certFile, 'utf8'), fs.readFile(secure.keyFile, 'utf8')]).catch((error: Error) => {
      throw new Error(`--metrics-cert-file / --metrics-key-file: cannot read the certificate or key: ${error.message}`, { cause: error });
    });
    return { cert, key };
  }
  logger.info('no --metrics-cert-file: serving metrics with a self-signed certificate generated at start-up');
  return selfSignedCertificate([os.hostname(), 'localhost'], ['127.0.0.1', '::1']);
}

/**
 * A throw-away certificate for the metrics endpoint, as controller-runtime generates one when no
 * certificate is given. Node's crypto makes keys but no X.509 certificates, and the image
 * (node:20-bookworm-slim) has no `openssl` binary, so the maintained `selfsigned` library signs it.
 */
export async function selfSignedCertificate(dnsNames: string[], ips: string[]): Promise<{ cert: string; key: string }> {
  const { generate } = await import('selfsigned');
  const now = Date.now();
  const pems = await generate([{ name: 'commonName', value: 'realm-operator-metrics' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 365 * 24 * 3_600_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [...dnsNames.map((value) => ({ type: 2 as const, value })), ...ips.map((ip) => ({ type: 7 as const, ip }))] },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}
