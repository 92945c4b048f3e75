/**
 * `kubectl realm`: argument parsing and what it prints, apart from any I/O (kubectl-realm.ts reads
 * the API server and, when given a database URL, the acknowledgement tables).
 */
import { parseArgs } from 'node:util';
import { CONTENT_VERSION_PATTERN, type PublishedRealm } from '../api/v1alpha1/published-realm-types.js';

export const USAGE = `usage: kubectl realm <command> [flags]

commands:
  status [name]            each PublishedRealm's live version (revision, epoch, digest, files,
                           published at) and each replica's acknowledgement
  versions <name>          the published versions kept for rollback
  rollback <name> --to-version <id> [--wait]
                           make a kept version live again (sets spec.rollbackTo); --wait
                           waits until it is Ready (every live replica acknowledged)

flags:
  -n, --namespace <ns>     namespace (default: the kubeconfig context's, else "default")
  -A, --all-namespaces     every namespace (status)
      --kubeconfig <file>  kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)
      --context <name>     kubeconfig context (default: the current one)
      --database-url <url> read per-replica acknowledgements from Boxel's database
                           (default: $DATABASE_URL; without it, the counts in status)
  -h, --help               this help
`;

/** What versions says for an object with no kept versions in its status. */
export const NO_KEPT_VERSIONS = 'no kept versions yet: the operator lists them in status.versions after its first publish (spec.history.limit sets how many are kept)';

export type PluginCommand =
  | { command: 'help' }
  | { command: 'status'; name?: string; allNamespaces: boolean; common: CommonFlags }
  | { command: 'versions'; name: string; common: CommonFlags }
  | { command: 'rollback'; name: string; toVersion: string; wait: boolean; common: CommonFlags };

export interface CommonFlags {
  namespace?: string;
  kubeconfig?: string;
  context?: string;
  databaseURL?: string;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses `kubectl realm …` arguments; a {@link UsageError} names the problem and the fix. */
export function parsePluginArgs(argv: readonly string[], env: NodeJS.ProcessEnv = {}): PluginCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        namespace: { type: 'string', short: 'n' },
        'all-namespaces': { type: 'boolean', short: 'A' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        'database-url': { type: 'string' },
        'to-version': { type: 'string' },
        wait: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}; see kubectl realm --help`);
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) return { command: 'help' };
  const [command, name, ...extra] = positionals;
  const common: CommonFlags = {
    ...(values.namespace ? { namespace: values.namespace } : {}),
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.context ? { context: values.context } : {}),
    ...((values['database-url'] ?? env.DATABASE_URL) ? { databaseURL: values['database-url'] ?? env.DATABASE_URL } : {}),
  };
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}: ${command} takes one PublishedRealm name`);
  if (values['all-namespaces'] && command !== 'status') throw new UsageError(`--all-namespaces is for status only; give ${command} a name and -n <namespace>`);
  if (values['all-namespaces'] && values.namespace) throw new UsageError('give --namespace or --all-namespaces, not both');
  if (values['to-version'] !== undefined && command !== 'rollback') throw new UsageError(`--to-version is for rollback only`);
  if (values.wait && command !== 'rollback') throw new UsageError(`--wait is for rollback only`);
  switch (command) {
    case 'status':
      return { command, ...(name ? { name } : {}), allNamespaces: Boolean(values['all-namespaces']), common };
    case 'versions':
      if (!name) throw new UsageError('versions needs a PublishedRealm name: kubectl realm versions <name>');
      return { command, name, common };
    case 'rollback': {
      if (!name) throw new UsageError('rollback needs a PublishedRealm name: kubectl realm rollback <name> --to-version <id>');
      const text = values['to-version'];
      if (text === undefined) throw new UsageError('rollback needs --to-version <id>: the version to make live (kubectl realm versions <name> lists them)');
      if (!new RegExp(CONTENT_VERSION_PATTERN).test(text)) throw new UsageError(`--to-version ${JSON.stringify(text)} is not a version id; give one such as v1764130000000-0a1b2c3d from kubectl realm versions <name>`);
      return { command, name, toVersion: text, wait: Boolean(values.wait), common };
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}: use status, versions or rollback (kubectl realm --help)`);
  }
}

/** One replica's acknowledgement of a realm, from the database. */
export interface ReplicaAck {
  replicaId: string;
  /** Lease not expired (database clock). */
  live: boolean;
  /** Highest epoch of this realm the replica acknowledged; undefined when never. */
  ackedEpoch?: number;
  ackedAt?: string;
  /** The replica emptied its whole cache at this epoch position (counts as acknowledging anything up to it). */
  cacheStartedEpoch?: number;
}

const condition = (realm: PublishedRealm, type: string) => realm.status?.conditions?.find((c) => c.type === type);

function spec(realm: PublishedRealm): Record<string, unknown> {
  return (realm.spec ?? {}) as Record<string, unknown>;
}

function shortDigest(digest: string | undefined): string {
  if (!digest) return '-';
  const [algorithm, hex] = digest.includes(':') ? digest.split(':', 2) : ['sha256', digest];
  return `${algorithm}:${hex!.slice(0, 12)}`;
}

function humanBytes(bytes: number | undefined): string {
  if (bytes === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('   ')).join('\n') + '\n';
}

/** `kubectl realm status` without a name: one line per PublishedRealm. */
export function formatStatusTable(realms: PublishedRealm[], withNamespace: boolean): string {
  if (realms.length === 0) return 'No PublishedRealms found.\n';
  const header = [...(withNamespace ? ['NAMESPACE'] : []), 'NAME', 'READY', 'REASON', 'REVISION', 'EPOCH', 'DIGEST', 'FILES', 'PUBLISHED AT', 'ACKNOWLEDGED'];
  const rows = realms.map((realm) => {
    const ready = condition(realm, 'Ready');
    const s = realm.status ?? {};
    const replicas = s.replicas;
    return [
      ...(withNamespace ? [realm.metadata.namespace] : []),
      realm.metadata.name,
      ready?.status ?? 'Unknown',
      ready?.reason ?? '-',
      s.publishedRevision ?? '-',
      s.epoch === undefined ? '-' : String(s.epoch),
      shortDigest(s.contentDigest),
      s.fileCount === undefined ? '-' : String(s.fileCount),
      s.publishedAt ?? '-',
      replicas ? `${replicas.acknowledged}/${replicas.expected}${replicas.mode === 'NotifyOnly' ? ' (notify-only)' : ''}` : '-',
    ];
  });
  return table([header, ...rows]);
}

/** `kubectl realm status <name>`: the live version and each replica's acknowledgement. */
export function formatStatusDetail(realm: PublishedRealm, acks?: ReplicaAck[]): string {
  const s = realm.status ?? {};
  const sp = spec(realm);
  const lines: string[] = [];
  const ready = condition(realm, 'Ready');
  const generation = realm.metadata.generation;
  lines.push(`PublishedRealm ${realm.metadata.namespace}/${realm.metadata.name}`);
  lines.push(`  Source:            ${String(sp.sourceRealmURL ?? (sp.sourceRealmRef ? `Realm ${(sp.sourceRealmRef as { name: string }).name}` : '-'))}`);
  lines.push(`  Published URL:     ${String(sp.publishedRealmURL ?? '-')}`);
  lines.push(`  Ready:             ${ready ? `${ready.status} (${ready.reason})` : 'Unknown (not reconciled yet)'}`);
  if (ready?.message) lines.push(`                     ${ready.message}`);
  for (const type of ['Reconciling', 'Stalled']) {
    const c = condition(realm, type);
    if (c?.status === 'True') lines.push(`  ${`${type}:`.padEnd(19)}${c.reason}: ${c.message}`);
  }
  if (s.epoch === undefined && s.publishedAt === undefined) {
    lines.push('  Live version:      none (not published yet)');
  } else {
    lines.push('  Live version:');
    lines.push(`    Revision:        ${s.publishedRevision ?? '(unset)'}${s.publishedGeneration !== undefined && generation !== undefined && s.publishedGeneration !== generation ? ` (published from generation ${s.publishedGeneration}; the object is at ${generation})` : ''}`);
    lines.push(`    Version:         ${s.liveVersion ?? '-'}${rolledBackTo(realm) ? ' (rolled back: spec.rollbackTo is set)' : ''}`);
    lines.push(`    Epoch:           ${s.epoch ?? '-'}`);
    lines.push(`    Digest:          ${s.contentDigest ?? '-'}`);
    lines.push(`    Files:           ${s.fileCount ?? '-'} (${humanBytes(s.totalBytes)})`);
    lines.push(`    Published at:    ${s.publishedAt ?? '-'}`);
    lines.push(`    Directory:       _published/${s.diskId ?? '-'}`);
    if (s.reindexJobId !== undefined) lines.push(`    Reindex job:     ${s.reindexJobId}`);
  }
  const replicas = s.replicas;
  if (replicas) {
    lines.push(`  Replicas:          ${replicas.acknowledged}/${replicas.expected} live replicas acknowledged epoch ${s.epoch ?? '-'} (${replicas.mode})`);
    if (replicas.missing?.length) lines.push(`    Not yet:         ${replicas.missing.join(', ')}`);
    if (replicas.unregistered?.length) lines.push(`    Not registered:  ${replicas.unregistered.join(', ')} (told by NOTIFY only)`);
  } else {
    lines.push('  Replicas:          - (no acknowledgement recorded in status yet)');
  }
  if (acks) {
    lines.push('');
    if (acks.length === 0) {
      lines.push('  No replica is registered in the database (realm servers without the listener are told by NOTIFY only).');
    } else {
      const epoch = s.epoch;
      const rows = acks.map((ack) => {
        const done = epoch !== undefined && ((ack.ackedEpoch ?? 0) >= epoch || (ack.cacheStartedEpoch ?? 0) >= epoch);
        const state = !ack.live ? 'lease expired' : epoch === undefined ? '-' : done ? 'acknowledged' : 'NOT ACKNOWLEDGED';
        return [ack.replicaId, ack.live ? 'yes' : 'no', ack.ackedEpoch === undefined ? '-' : String(ack.ackedEpoch), ack.ackedAt ?? '-', state];
      });
      lines.push(
        ...table([['REPLICA', 'LIVE', 'ACKED EPOCH', 'ACKED AT', `EPOCH ${epoch ?? '-'}`], ...rows])
          .trimEnd()
          .split('\n')
          .map((l) => `  ${l}`),
      );
    }
  }
  const kept = s.versions ?? [];
  lines.push(`  Kept versions:     ${kept.length === 0 ? 'none yet' : `${kept.length} (kubectl realm versions ${realm.metadata.name})`}`);
  return `${lines.join('\n')}\n`;
}

function rolledBackTo(realm: PublishedRealm): string | undefined {
  const to = (realm.spec as { rollbackTo?: unknown } | undefined)?.rollbackTo;
  return typeof to === 'string' ? to : undefined;
}

/** `kubectl realm versions <name>`: the kept versions, newest first, the live one marked. */
export function formatVersions(realm: PublishedRealm): string {
  const kept = realm.status?.versions ?? [];
  if (kept.length === 0) return `${realm.metadata.namespace}/${realm.metadata.name}: ${NO_KEPT_VERSIONS}.\n`;
  const rows = kept.map((v) => [v.live ? '*' : '', v.version, String(v.epoch), v.revision ?? '-', String(v.fileCount), humanBytes(v.totalBytes), v.publishedAt, v.digest.slice(0, 19)]);
  return table([['LIVE', 'VERSION', 'EPOCH', 'REVISION', 'FILES', 'SIZE', 'PUBLISHED AT', 'DIGEST'], ...rows]);
}

/** Why `rollback` refuses `version` for this object before patching anything; undefined when it is kept. */
export function rollbackRefusal(realm: PublishedRealm, version: string): string | undefined {
  const kept = realm.status?.versions ?? [];
  if (kept.some((v) => v.version === version)) return undefined;
  return `${version} is not a kept version of ${realm.metadata.namespace}/${realm.metadata.name} (kept: ${kept.length > 0 ? kept.map((v) => v.version).join(', ') : 'none'}); choose one from kubectl realm versions ${realm.metadata.name}`;
}

/** What `rollback --wait` sees in the object after its patch: still going, done, or stuck. */
export function rollbackProgress(realm: PublishedRealm, generation: number): { state: 'waiting' } | { state: 'ready'; message: string } | { state: 'stalled'; message: string } {
  const s = realm.status;
  if (!s || (s.observedGeneration ?? 0) < generation) return { state: 'waiting' };
  const condition = (type: string) => s.conditions?.find((c) => c.type === type);
  const stalled = condition('Stalled');
  if (stalled?.status === 'True') return { state: 'stalled', message: `${stalled.reason}: ${stalled.message}` };
  const ready = condition('Ready');
  if (ready?.status === 'True' && ready.observedGeneration !== undefined && ready.observedGeneration >= generation) return { state: 'ready', message: ready.message };
  return { state: 'waiting' };
}
