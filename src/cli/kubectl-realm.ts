#!/usr/bin/env node
/**
 * `kubectl realm` (a kubectl plugin: bin/kubectl-realm on PATH runs this): each PublishedRealm's
 * live version and each replica's acknowledgement; `versions` lists the kept versions (status.versions)
 * and `rollback` sets spec.rollbackTo by a merge patch, optionally waiting for Ready. Reads the API server with the runtime's client (kubeconfig
 * in client-go's order) and, given --database-url / DATABASE_URL, the acknowledgement tables.
 */
import pg from 'pg';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../api/v1alpha1/published-realm-types.js';
import { kubeRequest, type KubeConnection } from '../runtime/kube-client.js';
import { loadDefaultConnection, loadKubeconfig, StaticKubeConnection } from '../runtime/kubeconfig.js';
import { formatStatusDetail, formatStatusTable, formatVersions, parsePluginArgs, rollbackProgress, rollbackRefusal, UsageError, USAGE, type CommonFlags, type ReplicaAck } from './kubectl-realm-view.js';

async function connect(flags: CommonFlags): Promise<{ connection: KubeConnection; namespace: string }> {
  let connection: KubeConnection | undefined;
  if (flags.kubeconfig || flags.context) {
    const file = flags.kubeconfig ?? (process.env.KUBECONFIG ?? '').split(':').find(Boolean) ?? `${process.env.HOME}/.kube/config`;
    try {
      connection = loadKubeconfig(file, flags.context);
    } catch (error) {
      if (!(error as Error).message.includes('need a @kubernetes/client-node KubeConfig')) throw error;
    }
  } else {
    connection = loadDefaultConnection();
  }
  if (!connection) {
    // exec or auth-provider credentials, or several kubeconfig files: client-node handles those.
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kubeConfig = new KubeConfig();
    if (flags.kubeconfig) kubeConfig.loadFromFile(flags.kubeconfig);
    else kubeConfig.loadFromDefault();
    if (flags.context) kubeConfig.setCurrentContext(flags.context);
    const contextNamespace = kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace;
    return { connection: kubeConfig, namespace: flags.namespace ?? contextNamespace ?? 'default' };
  }
  const contextNamespace = connection instanceof StaticKubeConnection ? connection.settings.namespace : undefined;
  return { connection, namespace: flags.namespace ?? contextNamespace ?? 'default' };
}

const basePath = (namespace?: string) => `/apis/${GROUP}/${VERSION}${namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${PLURAL}`;

async function readAcks(databaseURL: string, realmURL: string): Promise<ReplicaAck[]> {
  const pool = new pg.Pool({ connectionString: databaseURL, max: 1 });
  try {
    const { rows } = await pool.query<{ replica_id: string; live: boolean; epoch: string | null; acked_at: Date | null; cache_started_epoch: string | null }>(
      `SELECT r.replica_id, r.lease_expires_at > now() AS live, a.epoch, a.acked_at, r.cache_started_epoch
         FROM realm_operator.replicas r
         LEFT JOIN realm_operator.replica_acks a ON a.replica_id = r.replica_id AND a.realm_url = $1
        ORDER BY r.replica_id`,
      [realmURL],
    );
    return rows.map((row) => ({
      replicaId: row.replica_id,
      live: row.live,
      ...(row.epoch !== null ? { ackedEpoch: Number(row.epoch) } : {}),
      ...(row.acked_at ? { ackedAt: row.acked_at.toISOString() } : {}),
      ...(row.cache_started_epoch !== null ? { cacheStartedEpoch: Number(row.cache_started_epoch) } : {}),
    }));
  } finally {
    await pool.end();
  }
}

async function main(argv: string[]): Promise<number> {
  const parsed = parsePluginArgs(argv, process.env);
  if (parsed.command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (parsed.command === 'versions' || parsed.command === 'rollback') {
    const { connection, namespace } = await connect(parsed.common);
    const path = `${basePath(namespace)}/${encodeURIComponent(parsed.name)}`;
    const realm = await kubeRequest<PublishedRealm>(connection, { path });
    if (parsed.command === 'versions') {
      process.stdout.write(formatVersions(realm));
      return 0;
    }
    const refusal = rollbackRefusal(realm, parsed.toVersion);
    if (refusal) {
      process.stderr.write(`kubectl realm rollback: ${refusal}.\n`);
      return 1;
    }
    // resourceVersion: refused (409) if the object changed since it was read, so the check above holds.
    const patched = await kubeRequest<PublishedRealm>(connection, {
      method: 'PATCH',
      path,
      // A person's change, named as kubectl names its own (not after the client's User-Agent, the operator's).
      query: { fieldManager: 'kubectl-realm' },
      contentType: 'application/merge-patch+json',
      body: { metadata: { resourceVersion: realm.metadata.resourceVersion }, spec: { rollbackTo: parsed.toVersion } },
    });
    const target = patched.metadata.generation ?? 0;
    process.stdout.write(`${namespace}/${parsed.name}: spec.rollbackTo set to ${parsed.toVersion} (generation ${target})\n`);
    if (!parsed.wait) return 0;
    for (;;) {
      const progress = rollbackProgress(await kubeRequest<PublishedRealm>(connection, { path }), target);
      if (progress.state === 'ready') {
        process.stdout.write(`Ready: ${progress.message}\n`);
        return 0;
      }
      if (progress.state === 'stalled') {
        process.stderr.write(`kubectl realm rollback: Stalled ${progress.message}\n`);
        return 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  const { connection, namespace } = await connect(parsed.common);
  if (parsed.name) {
    const realm = await kubeRequest<PublishedRealm>(connection, { path: `${basePath(namespace)}/${encodeURIComponent(parsed.name)}` });
    const publishedURL = (realm.spec as { publishedRealmURL?: string } | undefined)?.publishedRealmURL;
    const acks = parsed.common.databaseURL && publishedURL ? await readAcks(parsed.common.databaseURL, publishedURL) : undefined;
    process.stdout.write(formatStatusDetail(realm, acks));
    return 0;
  }
  const list = await kubeRequest<{ items: PublishedRealm[] }>(connection, { path: basePath(parsed.allNamespaces ? undefined : namespace) });
  process.stdout.write(formatStatusTable(list.items, parsed.allNamespaces));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error & { statusCode?: number }) => {
    const known = error instanceof UsageError || error.name === 'KubeApiError';
    process.stderr.write(`kubectl realm: ${known ? error.message : error.stack}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
