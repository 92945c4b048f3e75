/**
 * BENCHMARK ONLY — our side of the status-only comparison with a controller-runtime operator
 * (bench/controller-runtime.ts). Not the realm-operator: it reuses src/runtime's Informer,
 * Controller and Manager (the same machinery the operator runs) with a trivial reconciler that
 * writes Ready=True with observedGeneration on each PublishedRealm, and nothing else — exactly
 * what bench/peers/controller-runtime/main.go does. No data plane, no database, no leader election.
 *
 *   node --import tsx bench/lib/scale-status-only-operator.ts --namespace <ns> --workers <n>
 *   (KUBECONFIG names the API server)
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { GROUP, PLURAL, VERSION } from '../../src/api/v1alpha1/published-realm-types.js';
import {
  Controller,
  generationChanged,
  Informer,
  KeepAliveConnection,
  kubeRequest,
  loadKubeconfig,
  Manager,
  resourcePath,
  statusCodeOf,
  type KubeObject,
  type ObjectKey,
  type Reconciler,
} from '../../src/runtime/index.js';

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

type PublishedRealmObject = KubeObject & {
  metadata: { name: string; namespace: string; generation?: number; resourceVersion?: string };
  status?: { conditions?: Condition[] };
};

const { values } = parseArgs({ options: { namespace: { type: 'string' }, workers: { type: 'string', default: '4' } } });
const kubeconfig = process.env.KUBECONFIG;
if (!kubeconfig) throw new Error('KUBECONFIG must name the API server');
const connection = new KeepAliveConnection(loadKubeconfig(kubeconfig));
const logger = pino({ level: 'warn' });
const registry = new Registry();
const informer = new Informer<PublishedRealmObject>({
  kubeConfig: connection,
  resource: { group: GROUP, version: VERSION, plural: PLURAL },
  ...(values.namespace ? { namespace: values.namespace } : {}),
  logger,
  metricsRegistry: registry,
});

/** Reads the informer's cache (as controller-runtime's client does) and PUTs the status when Ready is missing. */
const reconciler: Reconciler = {
  async reconcile(key: ObjectKey) {
    const object = informer.get(key);
    if (!object) return;
    const generation = object.metadata.generation ?? 0;
    const conditions = object.status?.conditions ?? [];
    if (conditions.some((c) => c.type === 'Ready' && c.status === 'True' && c.observedGeneration === generation)) return;
    const ready: Condition = {
      type: 'Ready',
      status: 'True',
      reason: 'Published',
      message: 'status-only benchmark',
      observedGeneration: generation,
      lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    const body = { ...object, status: { ...object.status, conditions: [...conditions.filter((c) => c.type !== 'Ready'), ready] } };
    try {
      await kubeRequest(connection, { method: 'PUT', path: `${resourcePath({ group: GROUP, version: VERSION, plural: PLURAL }, key.namespace)}/${encodeURIComponent(key.name)}/status`, body });
    } catch (error) {
      if (statusCodeOf(error) === 404) return;
      throw error; // a conflict: retried with backoff, as controller-runtime does
    }
  },
};

const controller = new Controller({
  name: 'status-only',
  reconciler,
  source: informer,
  concurrency: Number(values.workers),
  predicates: [generationChanged],
  logger,
  metricsRegistry: registry,
});
const manager = new Manager({ server: false, logger, metricsRegistry: registry }).add(informer).add(controller);
const stop = new AbortController();
process.on('SIGTERM', () => stop.abort());
process.on('SIGINT', () => stop.abort());
process.stderr.write('status-only operator starting\n');
await manager.start(stop.signal);
connection.destroy();
