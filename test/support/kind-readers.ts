/**
 * A consistency reader (test/consistency/reader.ts) on every realm-server pod, kept in step with
 * the Deployment as it scales, rolls and loses pods: every second the pods are listed; each
 * running pod once it has been Ready (its listener resynced, as a Service would route to it), and
 * terminating ones too (they still answer requests), gets a `kubectl port-forward` on 127.0.0.1
 * and a Reader through it, named after the pod (which is also the replica id the
 * realm server reports in `x-replica-id`). A forward that ends (its pod is gone, or its container
 * died) stops its reader; the pod gets a new one if it is still running.
 */
import type { ConsistencyChecker } from '../consistency/checker.js';
import { Reader } from '../consistency/reader.js';
import { listPods, portForward, REALM_SERVER_PODS, sleep, SYSTEM_NAMESPACE, type PortForward } from './kind.js';

export interface PodReadersOptions {
  host: string;
  realmPath: string;
  files: readonly string[];
  checker: ConsistencyChecker;
  /** Pause between a reader's requests (ms): port-forwards go through the API server and kubelet. */
  pauseMs: number;
}

interface Attached {
  forward: PortForward;
  reader: Reader;
}

export class PodReaders {
  private readonly attached = new Map<string, Attached>();
  private readonly starting = new Set<string>();
  private readonly lastStart = new Map<string, number>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  /** Every pod that had a reader, and how many port-forwards it took. */
  readonly forwardsByPod = new Map<string, number>();
  readonly problems: string[] = [];
  /** Every pod seen Ready (and not terminating) at some sync: each must have been read. */
  readonly podsSeenReady = new Set<string>();

  constructor(private readonly options: PodReadersOptions) {}

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  /** Pods with a reader right now. */
  pods(): string[] {
    return [...this.attached.keys()].sort();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.sync().catch((error: Error) => {
        if (this.problems.length < 20) this.problems.push(`sync: ${error.message}`);
      });
      await sleep(1000);
    }
  }

  private async sync(): Promise<void> {
    const pods = (await listPods(SYSTEM_NAMESPACE, REALM_SERVER_PODS)).filter((p) => p.phase === 'Running');
    const running = new Set(pods.map((p) => p.name));
    for (const pod of pods) if (pod.ready && !pod.deleting) this.podsSeenReady.add(pod.name);
    for (const [name, attached] of this.attached) {
      if (!running.has(name)) await this.detach(name, attached);
    }
    for (const pod of pods) {
      if (this.stopped || this.attached.has(pod.name) || this.starting.has(pod.name)) continue;
      if (!pod.containers.some((c) => c.name === 'realm-server' && c.running)) continue;
      // Not before it was Ready once: errors of a server still starting are not what Ready promises.
      if (!this.podsSeenReady.has(pod.name)) continue;
      // A forward that keeps failing (container restarting) is retried every 2 s, not every sync.
      if (Date.now() - (this.lastStart.get(pod.name) ?? 0) < 2000) continue;
      this.lastStart.set(pod.name, Date.now());
      this.starting.add(pod.name);
      void this.attach(pod.name).finally(() => this.starting.delete(pod.name));
    }
  }

  private async attach(pod: string): Promise<void> {
    let forward: PortForward;
    try {
      forward = await portForward(SYSTEM_NAMESPACE, pod, 4201);
    } catch (error) {
      if (this.problems.length < 20) this.problems.push(`port-forward ${pod}: ${(error as Error).message.slice(0, 300)}`);
      return;
    }
    if (this.stopped) return void (await forward.stop());
    const { host, realmPath, files, checker, pauseMs } = this.options;
    const reader = new Reader({ replicaId: pod, port: forward.port, host, realmPath, files, checker, pauseMs }).start();
    const attached = { forward, reader };
    this.attached.set(pod, attached);
    this.forwardsByPod.set(pod, (this.forwardsByPod.get(pod) ?? 0) + 1);
    void forward.exited.then(() => {
      if (this.attached.get(pod) === attached) void this.detach(pod, attached);
    });
  }

  private async detach(pod: string, attached: Attached): Promise<void> {
    if (this.attached.get(pod) === attached) this.attached.delete(pod);
    // The reader first: it finishes its read in flight, which closing the forward under it would turn
    // into a transport error on a healthy pod (an error after Ready).
    await attached.reader.stop();
    await attached.forward.stop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    while (this.starting.size > 0) await sleep(100);
    await Promise.all([...this.attached].map(([pod, attached]) => this.detach(pod, attached)));
  }
}
