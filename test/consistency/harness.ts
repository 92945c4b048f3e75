/**
 * One scenario's world: its own database (on the run's PostgreSQL, or on a PostgreSQL the
 * scenario owns), realms root, namespaces (objects and leader lease), a source realm, one
 * PublishedRealm, realm-server replica processes with a reader each, operator processes, the
 * checker, and the driver that publishes revision after revision and records T_i.
 *
 * The operators connect with the database's admin credentials; the realm servers, as in deploy/,
 * through their own login in the least-privilege group role `realm_operator_replica`, so every
 * scenario also proves that role is enough for a replica end to end.
 *
 * Everything it starts it stops in `close()` (also after a failure), bounded in time.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { kubeRequest, KubeApiError } from '../../src/runtime/kube-client.js';
import { loadKubeconfig, type StaticKubeConnection } from '../../src/runtime/kubeconfig.js';
import { createReplicaLogin, createTestDatabase, type ReplicaLogin, type TestDatabase } from '../support/database.js';
import { testKubeconfigPath } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { startRealmServer, type Misbehaviour, type RealmServerProcess } from '../support/realm-server-process.js';
import { createSourceRealm, makeRealmsRoot, writeFiles } from '../support/realms.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { ConsistencyChecker, now, percentile, type CheckerCounts, type ReadRecord, type ReadyMark, type Regression, type Violation } from './checker.js';
import { REALM_FILES, realmContent } from './content.js';
import { ReadyDecisions } from './ready-time.js';
import { Reader, sleep } from './reader.js';

export const PUBLISHED_HOST = 'pub.localhost';
const VERSION = 'v1alpha1';

export interface PublishedRealmObject {
  metadata: { name: string; namespace: string; generation?: number; resourceVersion?: string };
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    publishedRevision?: string;
    epoch?: number;
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string; observedGeneration?: number }>;
    replicas?: { acknowledged?: number; expected?: number; mode?: string };
    [key: string]: unknown;
  };
}

export interface ScenarioEnvOptions {
  /** Short name, used in namespaces, URLs and replica ids (lowercase letters, digits, dashes). */
  name: string;
  /** PostgreSQL admin URL for this scenario's database; default the run's (REALM_OPERATOR_TEST_ADMIN_URL). */
  adminURL?: string;
  /** Pause between a reader's requests (ms). */
  readPauseMs?: number;
  /** Bound on each wait for Ready (ms). Default 60 s. */
  readyTimeoutMs?: number;
  /**
   * When the tests run as root, run the operators as this unprivileged user (uid = gid; 65534 is
   * "nobody"): root reads mode-000 files, so only an unprivileged operator meets a genuinely
   * unreadable file. The realms root and a copy of the kubeconfig are given to the user.
   */
  operatorUid?: number;
  /** Extra files of the source realm at every revision (path → content), e.g. files under a nested realm's prefix. */
  extraSourceFiles?: (revision: number) => Record<string, string>;
}

/** What a set of readers reads and which checker judges it. */
export interface ReadTarget {
  /** Host header; default `pub.localhost`. */
  host?: string;
  /** URL path of the realm root, e.g. `/consistency-a/` (ends with `/`). */
  realmPath: string;
  files: readonly string[];
  checker: ConsistencyChecker;
}

/** One PublishedRealm object the driver publishes. */
export interface RealmObjectTarget {
  name: string;
  sourceURL: string;
  publishedURL: string;
  sourceDir: string;
  /** The source realm's content at a revision. */
  content(revision: number): Record<string, string>;
  checker: ConsistencyChecker;
  /** Reads after Ready must also be served by this realm (`x-realm-url`): for realms nested in another's URL. */
  requireRealm?: boolean;
}

export interface PublishOutcome {
  revision: number;
  /** PATCH sent → Ready observed (ms). */
  latencyMs: number;
  /** Ready decided (T_i, from the operator's log) → Ready observed by the driver's poll (ms). */
  pollLagMs: number;
}

interface Replica {
  proc: RealmServerProcess;
  readers: Reader[];
  /** The TCP proxy between this replica and PostgreSQL, when started `viaProxy`. */
  proxy?: TcpProxy;
}

export class ScenarioEnv {
  readonly checker: ConsistencyChecker;
  readonly replicas = new Map<string, Replica>();
  /** Every replica process ever started (for evidence), by id. */
  readonly replicaHistory: RealmServerProcess[] = [];
  readonly operators: OperatorProcess[] = [];
  readonly operatorHistory: OperatorProcess[] = [];
  readonly outcomes: PublishOutcome[] = [];
  readonly faults: Record<string, number> = {};
  /**
   * Replicas the scenario killed, stopped, paused, partitioned or started mid-run: only these may
   * answer non-200 or fail in transport after a Ready (the tests assert it).
   */
  readonly faulted = new Set<string>();
  readonly notes: string[] = [];
  /** When each Ready was decided, from the operators' logs. */
  private readonly decisions = new ReadyDecisions();
  /** When each replica was paused or partitioned (`to`: resumed or healed). */
  private readonly cutOff = new Map<string, Array<{ from: number; to?: number }>>();
  /** Reads of a cut-off replica after a Ready decided while it was cut off, by outcome. */
  readonly cutOffReads = { fresh: 0, stale: 0, error: 0 };
  /** Operators and replicas that exited without being asked to (crashes): each with its last output. */
  readonly unexpectedExits: string[] = [];
  private readonly expectedExits = new WeakSet<OperatorProcess>();
  private closing = false;
  private readersEnabled = false;
  private readonly readTargets: ReadTarget[] = [];
  /** Every checker of the scenario (the main one first), settled together before each publish. */
  private readonly checkers = new Set<ConsistencyChecker>();
  /** Checkers of targets other than the main realm, by name, for the result. */
  private readonly extraCheckers = new Map<string, ConsistencyChecker>();
  /** The main PublishedRealm (set by `create`). */
  main!: RealmObjectTarget;
  private kubeconfigForOperators: string | undefined;
  /** Names of PublishedRealms created (deleted again at close). */
  private readonly createdObjects = new Set<string>();
  private replicaCounter = 0;
  private operatorCounter = 0;
  private readonly started = now();
  private readonly cleanups: Array<() => Promise<unknown>> = [];
  readonly namespace: string;
  readonly leaseNamespace: string;
  readonly sourceURL: string;
  readonly publishedURL: string;
  readonly realmPath: string;
  readonly objectName = 'realm';
  db!: TestDatabase;
  /** The realm servers' login (a member of `realm_operator_replica`), one per scenario database. */
  replicaLogin!: ReplicaLogin;
  /** Who the replicas were connected as, read by `recordReplicaSessions` (once the first replicas are ready). */
  replicaSessions: ReplicaSessions | undefined;
  realmsRoot!: string;
  sourceDir!: string;
  readonly kube: StaticKubeConnection;

  private constructor(readonly options: ScenarioEnvOptions) {
    const suffix = randomBytes(3).toString('hex');
    this.namespace = `cons-${options.name}-${suffix}`;
    this.leaseNamespace = `${this.namespace}-lease`;
    this.realmPath = `/consistency-${options.name}/`;
    this.sourceURL = `http://localhost:4201/consistency-src-${options.name}/`;
    this.publishedURL = `http://${PUBLISHED_HOST}${this.realmPath}`;
    this.kube = loadKubeconfig(testKubeconfigPath());
    this.checker = this.newChecker();
    this.checkers.add(this.checker);
    this.readTargets.push({ realmPath: this.realmPath, files: REALM_FILES, checker: this.checker });
  }

  /** Creates the database, realms root, namespaces and source realm (revision 0). No processes yet. */
  static async create(options: ScenarioEnvOptions): Promise<ScenarioEnv> {
    const env = new ScenarioEnv(options);
    try {
      env.db = await createTestDatabase(options.adminURL ? { admin: options.adminURL } : {});
      env.cleanups.push(() => env.db.drop());
      env.replicaLogin = await createReplicaLogin(env.db.pool, env.db.url, `${env.db.name}_replica`);
      env.cleanups.push(() => env.replicaLogin.drop()); // runs before the drop above (cleanups run in reverse)
      const realms = await makeRealmsRoot();
      env.realmsRoot = realms.root;
      env.cleanups.push(() => realms.cleanup());
      for (const ns of [env.namespace, env.leaseNamespace]) {
        await kubeRequest(env.kube, { method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } });
        env.cleanups.push(() => kubeRequest(env.kube, { method: 'DELETE', path: `/api/v1/namespaces/${ns}` }).catch(() => undefined));
      }
      const content = (revision: number) => ({ ...realmContent(revision), ...options.extraSourceFiles?.(revision) });
      env.sourceDir = await createSourceRealm(env.db.pool, realms.layout, env.sourceURL, content(0), `consistency/${options.name}`);
      env.main = { name: env.objectName, sourceURL: env.sourceURL, publishedURL: env.publishedURL, sourceDir: env.sourceDir, content, checker: env.checker };
      // Only root can start a process as another user; anyone else is unprivileged already.
      if (options.operatorUid !== undefined && process.getuid?.() === 0) await env.handRealmsRootTo(options.operatorUid);
    } catch (error) {
      await env.close();
      throw error;
    }
    return env;
  }

  /** Gives the realms root and a private copy of the kubeconfig to `uid`, for unprivileged operators. */
  private async handRealmsRootTo(uid: number): Promise<void> {
    await chownTree(this.realmsRoot, uid);
    const dir = await fs.mkdtemp(path.join(path.dirname(this.realmsRoot), 'kubeconfig-'));
    this.cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    this.kubeconfigForOperators = path.join(dir, 'kubeconfig');
    await fs.copyFile(testKubeconfigPath(), this.kubeconfigForOperators);
    await fs.chown(dir, uid, uid);
    await fs.chown(this.kubeconfigForOperators, uid, uid);
  }

  /** A checker that snapshots evidence of violations and counts reads of cut-off replicas. */
  newChecker(): ConsistencyChecker {
    return new ConsistencyChecker(
      (v) => this.collectEvidence(v),
      (read, required) => this.countCutOffRead(read, required),
    );
  }

  /**
   * A read of a replica that was paused or partitioned when the read started, judged against a
   * Ready decided while it was cut off (so a Ready that did not wait for it): counted by outcome,
   * so a scenario can show the fence was exercised (a stale one is also a violation).
   */
  private countCutOffRead(read: ReadRecord, required: ReadyMark): void {
    const cut = this.cutOff.get(read.replica)?.some((w) => w.from <= read.start && (w.to === undefined || read.start <= w.to) && w.from < required.at);
    if (!cut) return;
    const outcome = read.status !== 200 ? 'error' : read.revision !== undefined && read.revision < required.revision ? 'stale' : 'fresh';
    this.cutOffReads[outcome] += 1;
  }

  /** Starts readers of `target` on every replica (now, if reading has started, and on replicas started later). */
  addReadTarget(name: string, target: ReadTarget): void {
    this.readTargets.push(target);
    this.extraCheckers.set(name, target.checker);
    this.checkers.add(target.checker);
    if (!this.readersEnabled) return;
    for (const replica of this.replicas.values()) replica.readers.push(this.newReader(replica.proc, target).start());
  }

  count(fault: string, by = 1): void {
    this.faults[fault] = (this.faults[fault] ?? 0) + by;
  }

  // --- replicas ---------------------------------------------------------------------------------

  /**
   * Starts a replica (a new id unless `id`), waits until it listens, starts its reader if reading.
   * `viaProxy`: its PostgreSQL connections go through a {@link TcpProxy} (to partition it later);
   * `misbehave`: a deliberately faulty test replica (see test/support/faulty-realm-server.ts).
   */
  async startReplica(options: { id?: string; waitReady?: boolean; viaProxy?: boolean; misbehave?: Misbehaviour } = {}): Promise<string> {
    const id = options.id ?? `${this.options.name}-r${++this.replicaCounter}`;
    if (this.replicas.has(id)) throw new Error(`replica ${id} is already running`);
    let databaseURL = this.replicaLogin.url;
    let proxy: TcpProxy | undefined;
    if (options.viaProxy) {
      const url = new URL(databaseURL);
      proxy = await TcpProxy.start({ host: url.hostname, port: Number(url.port || 5432) });
      const started = proxy;
      this.cleanups.push(() => started.close());
      url.hostname = '127.0.0.1';
      url.port = String(proxy.port);
      databaseURL = url.toString();
    }
    const proc = await startRealmServer({ databaseURL, realmsRoot: this.realmsRoot, replicaId: id, ...(options.misbehave ? { misbehave: options.misbehave } : {}) });
    this.replicaHistory.push(proc);
    const replica: Replica = { proc, readers: [], ...(proxy ? { proxy } : {}) };
    this.replicas.set(id, replica);
    void proc.exited.then(async (exit) => {
      if (this.closing || this.replicas.get(id) !== replica) return;
      await sleep(300);
      this.unexpectedExits.push(`realm server ${id} exited by itself (${JSON.stringify(exit)}) at ${new Date().toISOString()}; its last output:\n${compactLogs(proc.logs().slice(-60))}`);
      this.count('unexpected realm-server exit');
    });
    if (this.readersEnabled) replica.readers = this.readTargets.map((target) => this.newReader(proc, target).start());
    if (options.waitReady ?? true) await proc.waitReady();
    return id;
  }

  /** Stops a replica with `signal` (SIGKILL: crash, SIGTERM: graceful), then its reader. */
  async stopReplica(id: string, signal: NodeJS.Signals): Promise<void> {
    const replica = this.replicas.get(id);
    if (!replica) throw new Error(`no replica ${id}`);
    this.markFaulted(id);
    this.replicas.delete(id);
    await replica.proc.stop(signal);
    await Promise.all(replica.readers.map((reader) => reader.stop()));
  }

  replicaIds(): string[] {
    return [...this.replicas.keys()];
  }

  replica(id: string): Replica {
    const replica = this.replicas.get(id);
    if (!replica) throw new Error(`no replica ${id}`);
    return replica;
  }

  /** Marks `id` as faulted by the scenario (its errors after a Ready are allowed). */
  markFaulted(id: string): void {
    this.faulted.add(id);
  }

  /** SIGSTOP / SIGCONT: the process freezes with its sockets open (a paused VM, a GC stall, a stopped container). */
  pauseReplica(id: string): void {
    this.markFaulted(id);
    this.beginCutOff(id);
    if (!this.replica(id).proc.child.kill('SIGSTOP')) throw new Error(`could not SIGSTOP replica ${id}`);
  }

  resumeReplica(id: string): void {
    if (!this.replica(id).proc.child.kill('SIGCONT')) throw new Error(`could not SIGCONT replica ${id}`);
    this.endCutOff(id);
  }

  private beginCutOff(id: string): void {
    const windows = this.cutOff.get(id) ?? [];
    windows.push({ from: now() });
    this.cutOff.set(id, windows);
  }

  private endCutOff(id: string): void {
    const open = this.cutOff.get(id)?.at(-1);
    if (open && open.to === undefined) open.to = now();
  }

  /** Cuts `id` off PostgreSQL (its proxy stops moving bytes, sockets stay open) while it keeps serving HTTP; `healReplica` undoes it. */
  partitionReplica(id: string): void {
    const proxy = this.replica(id).proxy;
    if (!proxy) throw new Error(`replica ${id} was not started viaProxy`);
    this.markFaulted(id);
    this.beginCutOff(id);
    proxy.blackhole();
  }

  healReplica(id: string): void {
    const proxy = this.replica(id).proxy;
    if (!proxy) throw new Error(`replica ${id} was not started viaProxy`);
    proxy.heal();
    this.endCutOff(id);
  }

  /** The epoch `id` last acknowledged for `realmURL` (0 when none). */
  async ackedEpoch(id: string, realmURL: string): Promise<number> {
    const { rows } = await this.db.pool.query<{ epoch: string }>(`SELECT epoch FROM realm_operator.replica_acks WHERE replica_id = $1 AND realm_url = $2`, [id, realmURL]);
    return Number(rows[0]?.epoch ?? 0);
  }

  /**
   * Records who the running replicas are connected as: for each, the user of its listener session
   * (application_name `realm-listener:<id>` in pg_stat_activity, or `(no listener session)`), and
   * what the replicas' login may do beyond its group roles.
   */
  async recordReplicaSessions(): Promise<void> {
    const sessions = await this.db.pool.query<{ application_name: string; usename: string }>(
      `SELECT application_name, usename FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'realm-listener:%'`,
    );
    const users = new Map(sessions.rows.map((r) => [r.application_name.slice('realm-listener:'.length), r.usename]));
    const role = await this.db.pool.query<{ elevated: boolean; member_of: string[] }>(
      `SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolbypassrls OR r.rolreplication AS elevated,
              ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) AS member_of
         FROM pg_roles r WHERE r.rolname = $1`,
      [this.replicaLogin.name],
    );
    this.replicaSessions = {
      login: this.replicaLogin.name,
      elevated: role.rows[0]?.elevated ?? null,
      memberOf: role.rows[0]?.member_of ?? [],
      listenerUsers: Object.fromEntries(this.replicaIds().map((id) => [id, users.get(id) ?? '(no listener session)'])),
    };
  }

  /** Starts one reader per running replica; replicas started later get one at once. */
  startReaders(): void {
    this.readersEnabled = true;
    for (const replica of this.replicas.values()) {
      if (replica.readers.length === 0) replica.readers = this.readTargets.map((target) => this.newReader(replica.proc, target).start());
    }
  }

  /**
   * Starts `count` extra readers of the main realm on replica `id`, each on its own connection,
   * and returns what stops them (once their reads in flight end). A replica's regular reader has
   * one request in flight at a time, and a cut-off replica may hold that one for the whole cut:
   * probes started after a Ready make sure that reads which START while it is cut off are judged.
   */
  probeReplica(id: string, count = 3): () => Promise<void> {
    const replica = this.replica(id);
    const probes = Array.from({ length: count }, () => this.newReader(replica.proc, this.readTargets[0]!, { requestTimeoutMs: 10_000 }).start());
    // Among the replica's readers, so teardown stops them too.
    replica.readers.push(...probes);
    this.count('probe readers started on a cut-off replica', count);
    return async () => {
      replica.readers = replica.readers.filter((reader) => !probes.includes(reader));
      await Promise.all(probes.map((probe) => probe.stop()));
    };
  }

  private newReader(proc: RealmServerProcess, target: ReadTarget, extra: { requestTimeoutMs?: number } = {}): Reader {
    return new Reader({
      ...extra,
      replicaId: proc.replicaId,
      port: proc.port,
      host: target.host ?? PUBLISHED_HOST,
      realmPath: target.realmPath,
      files: target.files,
      checker: target.checker,
      pauseMs: this.options.readPauseMs ?? 1,
    });
  }

  // --- operators --------------------------------------------------------------------------------

  async startOperator(options: { identity?: string; crashAtStep?: string; waitHealthy?: boolean } = {}): Promise<OperatorProcess> {
    const identity = options.identity ?? `${this.options.name}-op${++this.operatorCounter}${options.crashAtStep ? `-crash-${options.crashAtStep}` : ''}`;
    const operator = await startOperator({
      databaseURL: this.db.url,
      realmsRoot: this.realmsRoot,
      identity,
      leaderElectionNamespace: this.leaseNamespace,
      // Only this scenario's objects: other suites share the API server but not the database.
      extraArgs: ['--namespace', this.namespace],
      ...(this.kubeconfigForOperators ? { uid: this.options.operatorUid, kubeconfig: this.kubeconfigForOperators } : {}),
      ...(options.crashAtStep ? { env: { REALM_OPERATOR_FAULT_CRASH_AT_STEP: options.crashAtStep } } : {}),
    });
    this.operatorHistory.push(operator);
    if (this.closing) {
      // Started (by the crash-restart path) while the scenario was being torn down.
      this.expectedExits.add(operator);
      await boundedExit(operator, 'SIGKILL', 5000);
      throw new Error(`operator ${identity} started during teardown; stopped it`);
    }
    this.operators.push(operator);
    if (options.crashAtStep) this.expectedExits.add(operator);
    void operator.exited.then(async (exit) => {
      const index = this.operators.indexOf(operator);
      if (index >= 0) this.operators.splice(index, 1);
      if (this.closing || this.expectedExits.has(operator)) return;
      // Nobody asked this operator to stop: that is a finding, with its last words as evidence
      // (read once its output is drained).
      await sleep(300);
      this.unexpectedExits.push(`operator ${identity} exited by itself (${JSON.stringify(exit)}) at ${new Date().toISOString()}; its last output:\n${compactLogs(operator.logs().slice(-60))}`);
      this.count('unexpected operator exit');
      // Like a Deployment (restartPolicy Always), run a replacement, so the scenario goes on
      // measuring consistency; the test still fails on the unexpected exit.
      await sleep(700);
      if (this.closing) return;
      await this.startOperator({ waitHealthy: false }).then(
        (replacement) => this.notes.push(`operator ${identity} crashed; replacement ${replacement.identity} started`),
        (error: Error) => this.notes.push(`could not restart crashed operator ${identity}: ${error.message}`),
      );
    });
    if (options.waitHealthy ?? true) await waitForHTTP(operator, `${operator.healthURL}/healthz`);
    return operator;
  }

  async stopOperator(operator: OperatorProcess, signal: NodeJS.Signals): Promise<void> {
    this.expectedExits.add(operator);
    await boundedExit(operator, signal, 20_000);
  }

  // --- the PublishedRealm -----------------------------------------------------------------------

  private objectPath(name = this.objectName): string {
    return `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PLURAL}/${name}`;
  }

  async getRealm(name = this.objectName): Promise<PublishedRealmObject> {
    return kubeRequest<PublishedRealmObject>(this.kube, { path: this.objectPath(name) });
  }

  /**
   * Creates the PublishedRealm of `target` (default: the main one) at `revision` (default 0),
   * writing that revision into its source first, and waits until it is Ready (T_revision).
   */
  async createRealm(target: RealmObjectTarget = this.main, revision = 0): Promise<PublishOutcome> {
    if (revision !== 0) await writeFiles(target.sourceDir, target.content(revision));
    const sent = now();
    this.settleCheckers(sent);
    await kubeRequest(this.kube, {
      method: 'POST',
      path: `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PLURAL}`,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'PublishedRealm',
        metadata: { name: target.name, namespace: this.namespace },
        spec: { sourceRealmURL: target.sourceURL, publishedRealmURL: target.publishedURL, revision: String(revision), reindex: { enabled: true } },
      },
    });
    this.createdObjects.add(target.name);
    const ready = await this.waitReady(revision, sent, undefined, target);
    const outcome = { revision, latencyMs: ready.seenAt - sent, pollLagMs: ready.seenAt - ready.decidedAt };
    if (revision !== 0) this.outcomes.push(outcome);
    return outcome;
  }

  /**
   * Deletes `target`'s PublishedRealm (the operator unpublishes it through its finalizer) and
   * waits until it is gone. From the moment the DELETE is sent its checker requires nothing.
   */
  async deleteRealm(target: RealmObjectTarget): Promise<void> {
    target.checker.markAbsent(now());
    await kubeRequest(this.kube, { method: 'DELETE', path: this.objectPath(target.name) });
    const deadline = Date.now() + (this.options.readyTimeoutMs ?? 60_000);
    for (;;) {
      const gone = await this.getRealm(target.name).then(() => false, (e: unknown) => e instanceof KubeApiError && e.statusCode === 404);
      if (gone) return;
      if (Date.now() > deadline) throw new Error(`[${this.options.name}] PublishedRealm ${target.name} not deleted within the Ready timeout;\n${this.operatorLogTail(25)}`);
      await sleep(25);
    }
  }

  /**
   * Publishes `revision`: writes it into every source file, PATCHes spec.revision, runs `during`
   * (the scenario's fault) concurrently, and polls until Ready for it; records T_i. Rethrows a
   * failure of `during`. Waits for `during` to finish before returning.
   */
  async publish(revision: number, during?: (patchedAt: number) => Promise<void>, target: RealmObjectTarget = this.main): Promise<PublishOutcome> {
    await writeFiles(target.sourceDir, target.content(revision));
    const sent = now();
    // This publish's Ready is decided after the PATCH: every read started so far can be judged.
    this.settleCheckers(sent);
    await kubeRequest(this.kube, {
      method: 'PATCH',
      path: this.objectPath(target.name),
      contentType: 'application/merge-patch+json',
      body: { spec: { revision: String(revision) } },
    });
    let failure: { error: unknown } | undefined;
    const fault = during ? during(sent).catch((error: unknown) => void (failure = { error })) : Promise.resolve();
    let ready: { decidedAt: number; seenAt: number };
    try {
      ready = await this.waitReady(revision, sent, () => failure, target);
    } finally {
      // Never leave a fault running behind a failure (it may be restarting PostgreSQL).
      await withTimeout(fault, 90_000, `the fault of revision ${revision} did not finish within 90 s`).catch(() => undefined);
    }
    if (failure) throw failure.error;
    const outcome = { revision, latencyMs: ready.seenAt - sent, pollLagMs: ready.seenAt - ready.decidedAt };
    this.outcomes.push(outcome);
    return outcome;
  }

  private settleCheckers(until: number): void {
    for (const checker of this.checkers) checker.settle(until);
  }

  /**
   * T_i: when the operator decided Ready for `epoch` of `target` (its log line after the last
   * acknowledgement, before the status write; see ready-time.ts). The line is written before the
   * status, but the pipe may deliver it a moment after the poll saw the status: waits (bounded)
   * for it, and fails the run if no operator logged it.
   */
  private async readyDecidedAt(target: RealmObjectTarget, epoch: number, since: number, seenAt: number): Promise<number> {
    const object = `${this.namespace}/${target.name}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const operator of this.operatorHistory) this.decisions.scan(operator, operator.logs());
      const decided = this.decisions.decidedAt(object, epoch, since);
      if (decided !== undefined) {
        if (decided > seenAt) throw new Error(`[${this.options.name}] ${object}: Ready for epoch ${epoch} logged at ${decided}, after the poll saw it at ${seenAt}: the clocks disagree`);
        return decided;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `[${this.options.name}] ${object} is Ready at epoch ${epoch}, but no operator logged 'replicas acknowledged' after waiting for that epoch: ` +
            `the checker cannot tell when Ready was written (did the reconciler's log lines change? see test/consistency/ready-time.ts)\n${this.operatorLogTail(25)}`,
        );
      }
      await sleep(20);
    }
  }

  /** Polls (every 25 ms) until the object is Ready for `revision`; records T_i (when it was decided) and returns it with when it was seen. */
  private async waitReady(
    revision: number,
    since: number,
    failed: () => { error: unknown } | undefined = () => undefined,
    target: RealmObjectTarget = this.main,
  ): Promise<{ decidedAt: number; seenAt: number }> {
    const timeout = this.options.readyTimeoutMs ?? 60_000;
    const deadline = since + timeout;
    let last: PublishedRealmObject | undefined;
    let lastError: unknown;
    for (;;) {
      const failure = failed();
      if (failure) throw failure.error;
      try {
        last = await this.getRealm(target.name);
        const status = last.status;
        const ready = status?.conditions?.find((c) => c.type === 'Ready');
        if (
          status?.publishedRevision === String(revision) &&
          ready?.status === 'True' &&
          status.observedGeneration !== undefined &&
          status.observedGeneration === last.metadata.generation &&
          (ready.observedGeneration === undefined || ready.observedGeneration === last.metadata.generation)
        ) {
          const seenAt = now();
          if (typeof status.epoch !== 'number') throw new Error(`[${this.options.name}] ${target.name} is Ready for revision ${revision} without status.epoch: ${JSON.stringify(status)}`);
          const decidedAt = await this.readyDecidedAt(target, status.epoch, since, seenAt);
          target.checker.markReady(revision, decidedAt, { seenAt, ...(target.requireRealm ? { realm: target.publishedURL } : {}) });
          return { decidedAt, seenAt };
        }
      } catch (error) {
        lastError = error;
      }
      if (now() > deadline) {
        throw new Error(
          `[${this.options.name}] ${target.name} revision ${revision} not Ready within ${timeout} ms.\n` +
            `object: ${JSON.stringify(last?.metadata)} status: ${JSON.stringify(last?.status)}\n` +
            (lastError ? `last API error: ${String(lastError)}\n` : '') +
            (this.unexpectedExits.length ? `unexpected exits:\n${this.unexpectedExits.join('\n')}\n` : '') +
            `replicas running: ${this.replicaIds().join(', ')}; operators running: ${this.operators.map((o) => o.identity).join(', ') || 'none'}\n` +
            this.operatorLogTail(25),
        );
      }
      await sleep(25);
    }
  }

  // --- evidence and reporting -------------------------------------------------------------------

  operatorLogTail(lines: number): string {
    return this.operatorHistory
      .slice(-3)
      .map((o) => `--- operator ${o.identity} (exit ${o.child.exitCode ?? o.child.signalCode ?? 'running'}):\n${compactLogs(o.logs().slice(-lines))}`)
      .join('\n');
  }

  /** Snapshots the logs around a violating read at once (replica log buffers are bounded). */
  collectEvidence(v: Violation): void {
    const from = v.readyAt - 5000;
    const to = v.read.end + 1000;
    const window = (lines: Array<Record<string, unknown>>) =>
      lines.filter((l) => typeof l.time === 'number' && l.time >= from && l.time <= to).slice(-80).map((l) => ({ ...l, tMinusReadyMs: (l.time as number) - v.readyAt }));
    v.evidence = {
      replicaLogs: Object.fromEntries(this.replicaHistory.filter((p) => p.replicaId === v.read.replica).map((p, i) => [`${p.replicaId}#${i} (port ${p.port})`, window(p.logs())])),
      operatorLogs: Object.fromEntries(this.operatorHistory.map((o) => [o.identity, window(o.logs())])),
    };
    // Best effort: the database's view of replicas and acknowledgements right now.
    void this.db.pool
      .query(
        `SELECT r.replica_id, r.lease_expires_at, r.cache_started_epoch, a.epoch AS acked_epoch, e.epoch AS realm_epoch
           FROM realm_operator.replicas r
           LEFT JOIN realm_operator.replica_acks a ON a.replica_id = r.replica_id AND a.realm_url = $1
           LEFT JOIN realm_operator.realm_epochs e ON e.realm_url = $1`,
        [this.publishedURL],
      )
      .then(
        ({ rows }) => (v.evidence!.databaseAfterwards = rows),
        (error: Error) => (v.evidence!.databaseAfterwards = `query failed: ${error.message}`),
      );
  }

  result(publishesRequested: number): ScenarioResult {
    for (const checker of this.checkers) checker.finish();
    const latencies = this.outcomes.map((o) => o.latencyMs);
    const lags = this.outcomes.map((o) => o.pollLagMs);
    return {
      name: this.options.name,
      publishes: this.outcomes.length,
      publishesRequested,
      replicaSessions: this.replicaSessions,
      faults: { ...this.faults },
      counts: structuredClone(this.checker.counts),
      perReplica: this.checker.replicaCounts(),
      latency: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), max: latencies.length ? Math.max(...latencies) : NaN },
      pollLag: { p50: percentile(lags, 50), max: lags.length ? Math.max(...lags) : NaN },
      faulted: [...this.faulted].sort(),
      cutOffReads: { ...this.cutOffReads },
      wallMs: now() - this.started,
      violations: this.checker.violations,
      corruptReads: this.checker.corruptReads,
      regressionSamples: this.checker.regressionSamples,
      errorSamples: this.checker.errorSamples,
      errorAfterReadySamples: this.checker.errorAfterReadySamples,
      notes: this.notes,
      unexpectedExits: this.unexpectedExits,
      extra: Object.fromEntries(
        [...this.extraCheckers].map(([name, checker]) => [
          name,
          {
            counts: structuredClone(checker.counts),
            violations: checker.violations,
            corruptReads: checker.corruptReads,
            regressionSamples: checker.regressionSamples,
            errorAfterReadySamples: checker.errorAfterReadySamples,
          },
        ]),
      ),
      leftoverProcesses: [
        ...this.replicaHistory.filter((p) => p.alive()).map((p) => `realm-server ${p.replicaId} pid ${p.child.pid}`),
        ...this.operatorHistory.filter((o) => o.child.exitCode === null && o.child.signalCode === null).map((o) => `operator ${o.identity} pid ${o.child.pid}`),
      ],
    };
  }

  // --- teardown ---------------------------------------------------------------------------------

  /** Stops readers, deletes the object (while an operator can release its finalizer), stops every process, drops the database. */
  async close(): Promise<void> {
    this.readersEnabled = false;
    this.closing = true;
    await Promise.all([...this.replicas.values()].flatMap((r) => r.readers.map((reader) => reader.stop())));
    try {
      if (this.kube && this.operators.some((o) => o.child.exitCode === null && o.child.signalCode === null)) {
        for (const name of [...this.createdObjects].reverse()) {
          await kubeRequest(this.kube, { method: 'DELETE', path: this.objectPath(name) }).catch(() => undefined);
          const deadline = Date.now() + 20_000;
          while (Date.now() < deadline) {
            const gone = await this.getRealm(name).then(() => false, (e: unknown) => e instanceof KubeApiError && e.statusCode === 404);
            if (gone) break;
            await sleep(100);
          }
        }
      }
    } catch {
      // the object may not exist (set-up failed); namespaces go below anyway
    }
    // A partitioned or paused replica gets its database and its CPU back, so it can stop gracefully.
    for (const replica of this.replicas.values()) {
      replica.proxy?.heal();
      if (replica.proc.alive()) replica.proc.child.kill('SIGCONT');
    }
    await Promise.all([
      ...[...this.replicas.values()].map((r) => r.proc.stop('SIGTERM', 10_000)),
      ...this.operatorHistory.map((o) => boundedExit(o, 'SIGTERM', 10_000)),
    ]);
    this.replicas.clear();
    // Anything started but no longer tracked (e.g. a replica that failed to start) is gone too.
    await Promise.all(this.replicaHistory.map((p) => p.stop('SIGKILL', 5000)));
    for (const cleanup of this.cleanups.reverse()) await cleanup().catch(() => undefined);
    this.kube.destroy();
  }
}

export interface ScenarioResult {
  name: string;
  publishes: number;
  publishesRequested: number;
  /** Who the replicas were connected as (unset if the scenario failed before its replicas were ready). */
  replicaSessions: ReplicaSessions | undefined;
  faults: Record<string, number>;
  counts: CheckerCounts;
  perReplica: Record<string, { reads: number; ok: number; hits: number; errors: number }>;
  latency: { p50: number; p95: number; max: number };
  /** Ready decided → seen by the driver's poll (ms): the window the old checker never checked. */
  pollLag: { p50: number; max: number };
  /** Replicas the scenario faulted (their errors after a Ready are allowed). */
  faulted: string[];
  /** Reads of a paused or partitioned replica, started while it was cut off, after a Ready decided meanwhile. */
  cutOffReads: { fresh: number; stale: number; error: number };
  wallMs: number;
  violations: Violation[];
  corruptReads: unknown[];
  regressionSamples: Regression[];
  errorSamples: unknown[];
  errorAfterReadySamples: ConsistencyChecker['errorAfterReadySamples'];
  notes: string[];
  leftoverProcesses: string[];
  unexpectedExits: string[];
  /** Readers of other targets (e.g. a nested realm), judged by their own checkers. */
  extra: Record<string, { counts: CheckerCounts; violations: Violation[]; corruptReads: ReadRecord[]; regressionSamples: Regression[]; errorAfterReadySamples: ConsistencyChecker['errorAfterReadySamples'] }>;
}

export interface ReplicaSessions {
  /** The login every realm server was started with. */
  login: string;
  /** Whether the login itself is superuser, CREATEROLE, CREATEDB, BYPASSRLS or REPLICATION (null: no such role). */
  elevated: boolean | null;
  /** The roles the login is a member of. */
  memberOf: string[];
  /** Replica id → the user its listener session is logged in as. */
  listenerUsers: Record<string, string>;
}

/** chown -R (without following symlinks). */
async function chownTree(dir: string, uid: number): Promise<void> {
  await fs.lchown(dir, uid, uid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(full, uid);
    else await fs.lchown(full, uid, uid);
  }
}

/** Sends `signal`, waits up to `timeoutMs` for the exit, then SIGKILLs. */
export async function boundedExit(operator: OperatorProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  if (operator.child.exitCode !== null || operator.child.signalCode !== null) return;
  operator.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([operator.exited, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))]);
  clearTimeout(timer);
  if (result === 'timeout') {
    operator.child.kill('SIGKILL');
    await operator.exited;
  }
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export function formatResult(r: ScenarioResult): string {
  const c = r.counts;
  const ms = (v: number) => (Number.isFinite(v) ? `${Math.round(v)} ms` : 'n/a');
  const lines = [
    `consistency scenario ${r.name}: ${r.publishes}/${r.publishesRequested} publishes in ${(r.wallMs / 1000).toFixed(1)} s; publish→Ready p50 ${ms(r.latency.p50)}, p95 ${ms(r.latency.p95)}, max ${ms(r.latency.max)}; Ready decided→seen by the poll p50 ${ms(r.pollLag.p50)}, max ${ms(r.pollLag.max)}`,
    `  reads ${c.reads}: ok ${c.ok} (checked after a Ready ${c.checkedAfterReady}, of which before the poll saw it ${c.checkedBeforeSeen}), transport errors ${c.transportErrors}, non-200 ${JSON.stringify(c.non200)}, cache ${JSON.stringify(c.cache)}`,
    `  VIOLATIONS ${c.violations}, ERRORS AFTER READY ${c.errorsAfterReady} ${JSON.stringify(c.errorsAfterReadyByReplica)} (allowed only from faulted replicas ${JSON.stringify(r.faulted)}), REGRESSIONS ${c.regressions} ${JSON.stringify(c.regressionsByReplica)}, corrupt ${c.corrupt}, wrong replica ${c.wrongReplica}`,
    `  replicas connect as ${r.replicaSessions ? `${r.replicaSessions.login} (member of ${r.replicaSessions.memberOf.join(', ')}); listener sessions' users ${JSON.stringify(r.replicaSessions.listenerUsers)}` : '(not recorded)'}`,
    `  faults ${JSON.stringify(r.faults)}; reads of cut-off replicas after a Ready that did not wait for them ${JSON.stringify(r.cutOffReads)}`,
    `  per replica ${JSON.stringify(r.perReplica)}`,
    ...Object.entries(r.extra).map(
      ([name, x]) =>
        `  ${name}: reads ${x.counts.reads}, ok ${x.counts.ok} (checked after a Ready ${x.counts.checkedAfterReady}, before the poll saw it ${x.counts.checkedBeforeSeen}), non-200 ${JSON.stringify(x.counts.non200)}, ` +
        `transport errors ${x.counts.transportErrors}, cache ${JSON.stringify(x.counts.cache)}, VIOLATIONS ${x.counts.violations}, ERRORS AFTER READY ${x.counts.errorsAfterReady} ${JSON.stringify(x.counts.errorsAfterReadyByReplica)}, ` +
        `REGRESSIONS ${x.counts.regressions}, corrupt ${x.counts.corrupt}`,
    ),
    ...r.notes.map((n) => `  note: ${n}`),
  ];
  for (const v of [...r.violations, ...Object.values(r.extra).flatMap((x) => x.violations)].slice(0, 5)) {
    lines.push(
      `  violation: replica ${v.read.replica} file ${v.read.file} returned revision ${v.read.revision} of realm ${v.read.realm} (x-cache ${v.read.cache}, x-realm-epoch ${v.read.epoch}) ` +
        `for a read started ${v.startAfterReadyMs.toFixed(1)} ms and ended ${v.endAfterReadyMs.toFixed(1)} ms after Ready for revision ${v.requiredRevision}` +
        (v.requiredRealm ? ` of realm ${v.requiredRealm}` : ''),
      `    recent reads (t - T_i): ${v.recentReads.slice(-8).map((x) => `${x.file}@${(x.start - v.readyAt).toFixed(1)}:${x.status ?? x.error}/${x.revision}/${x.cache}`).join(' ')}`,
      `    evidence: ${JSON.stringify(v.evidence).slice(0, 20_000)}`,
    );
  }
  for (const x of r.unexpectedExits.slice(0, 3)) lines.push(`  UNEXPECTED EXIT: ${x.slice(0, 12_000)}`);
  for (const x of [...r.errorAfterReadySamples, ...Object.values(r.extra).flatMap((x) => x.errorAfterReadySamples)].slice(0, 5)) {
    lines.push(`  error after Ready for revision ${x.readyRevision}: ${x.read.replica} ${x.read.file} ${x.read.status ?? 'transport'} ${String(x.read.error ?? '').slice(0, 120)} started ${x.startAfterReadyMs} ms after Ready`);
  }
  for (const x of [...r.regressionSamples, ...Object.values(r.extra).flatMap((x) => x.regressionSamples)].slice(0, 5)) {
    lines.push(
      `  regression: ${x.read.replica} ${x.read.file}: revision ${x.previous.revision} (x-cache ${x.previous.cache}, epoch ${x.previous.epoch}) then ${x.read.revision} (x-cache ${x.read.cache}, epoch ${x.read.epoch}) ` +
        `${(x.read.start - x.previous.start).toFixed(1)} ms later; newest Ready then: ${x.lastReady ? `revision ${x.lastReady.revision}, ${x.lastReady.startAfterReadyMs.toFixed(0)} ms before` : 'none'}`,
    );
  }
  for (const x of r.corruptReads.slice(0, 3)) lines.push(`  corrupt read: ${JSON.stringify(x)}`);
  return lines.join('\n');
}

/** Log lines for a failure message: time, level, message, error code/message and the first frames; raw lines as they are. */
export function compactLogs(lines: Array<Record<string, unknown>>): string {
  return lines
    .map((l) => {
      if (l.unparsed) return String(l.msg);
      const { time, level, msg, err, pid: _pid, hostname: _host, ...rest } = l as Record<string, any>;
      let text = `${typeof time === 'number' ? new Date(time).toISOString() : '?'} L${level} ${msg}`;
      const extra = JSON.stringify(rest);
      if (extra !== '{}') text += ` ${extra.slice(0, 300)}`;
      if (err) text += ` err=${err.code ?? ''} ${err.message ?? ''} @ ${String(err.stack ?? '').split('\n').slice(1, 4).map((f: string) => f.trim()).join(' < ')}`;
      return text;
    })
    .join('\n');
}

/** One line for an unexpected exit: who, when, what it was doing last, and the error that killed it. */
export function summarizeExit(entry: string): string {
  const lines = entry.split('\n');
  const crash = lines.findIndex((l) => l.startsWith('node:events') || /^(Uncaught|Error|error|TypeError|RangeError)\b/.test(l));
  const before = lines.slice(1, crash >= 0 ? crash : undefined).filter((l) => /^\d{4}-/.test(l)).at(-1) ?? '';
  const error = lines.slice(crash >= 0 ? crash : lines.length).find((l) => /^(error|Error|TypeError|RangeError)\b/.test(l)) ?? '(no error printed)';
  return `${lines[0]!.replace(/; its last output:$/, '')} — last log: ${before.slice(0, 160)} — ${error}`;
}
