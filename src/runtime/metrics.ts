/**
 * The runtime's Prometheus metrics, under controller-runtime's (and client-go's) names and labels
 * so existing dashboards and alerts work unchanged. One set per registry, created on first use and
 * shared by every controller, queue and informer that reports into that registry.
 */
import { Counter, Gauge, Histogram, Registry, type GaugeConfiguration } from 'prom-client';
import type { WorkQueue, WorkQueueObserver } from './work-queue.js';

export const RECONCILE_RESULTS = ['success', 'error', 'requeue', 'requeue_after'] as const;
export type ReconcileResultLabel = (typeof RECONCILE_RESULTS)[number];

// controller-runtime's buckets for reconcile time, and client-go's exponential ones (10 ns .. 10 s)
// for the queue: reconciles are seconds, queue waits are anything from nanoseconds up.
const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0,
  4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];
const QUEUE_BUCKETS = Array.from({ length: 10 }, (_, i) => 1e-8 * 10 ** i);

export interface RuntimeMetrics {
  reconcileTotal: Counter<'controller' | 'result'>;
  reconcileErrors: Counter<'controller'>;
  terminalReconcileErrors: Counter<'controller'>;
  reconcileTime: Histogram<'controller'>;
  activeWorkers: Gauge<'controller'>;
  maxConcurrentReconciles: Gauge<'controller'>;
  queueDepth: Gauge<'name'>;
  queueAdds: Counter<'name'>;
  queueRetries: Counter<'name'>;
  queueDuration: Histogram<'name'>;
  workDuration: Histogram<'name'>;
  unfinishedWork: Gauge<'name'>;
  longestRunningProcessor: Gauge<'name'>;
  leaderStatus: Gauge<'name'>;
  informerLists: Counter<'informer'>;
  informerWatchRestarts: Counter<'informer' | 'reason'>;
  informerSynced: Gauge<'informer'>;
  informerObjects: Gauge<'informer'>;
  /** Queues whose gauges are read at scrape time, by `name` label. */
  queues: Map<string, WorkQueue<string>>;
}

const cache = new WeakMap<Registry, RuntimeMetrics>();

export function runtimeMetrics(registry: Registry): RuntimeMetrics {
  const existing = cache.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const queues = new Map<string, WorkQueue<string>>();
  // Depth and the in-flight gauges are computed when scraped, so they are exact and need no timer.
  const fromQueues = (read: (queue: WorkQueue<string>) => number) =>
    function collect(this: Gauge<'name'>) {
      for (const [name, queue] of queues) this.set({ name }, read(queue));
    };
  const metrics: RuntimeMetrics = {
    reconcileTotal: new Counter({ name: 'controller_runtime_reconcile_total', help: 'Total number of reconciliations per controller', labelNames: ['controller', 'result'], registers }),
    reconcileErrors: new Counter({ name: 'controller_runtime_reconcile_errors_total', help: 'Total number of reconciliation errors per controller', labelNames: ['controller'], registers }),
    terminalReconcileErrors: new Counter({
      name: 'controller_runtime_terminal_reconcile_errors_total',
      help: 'Total number of terminal reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    }),
    reconcileTime: new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: RECONCILE_BUCKETS,
      registers,
    }),
    activeWorkers: new Gauge({ name: 'controller_runtime_active_workers', help: 'Number of currently used workers per controller', labelNames: ['controller'], registers }),
    maxConcurrentReconciles: new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'],
      registers,
    }),
    queueDepth: new Gauge({ name: 'workqueue_depth', help: 'Current depth of workqueue', labelNames: ['name'], registers, collect: fromQueues((q) => q.length) }),
    queueAdds: new Counter({ name: 'workqueue_adds_total', help: 'Total number of adds handled by workqueue', labelNames: ['name'], registers }),
    queueRetries: new Counter({ name: 'workqueue_retries_total', help: 'Total number of retries handled by workqueue', labelNames: ['name'], registers }),
    queueDuration: new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: ['name'],
      buckets: QUEUE_BUCKETS,
      registers,
    }),
    workDuration: new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes',
      labelNames: ['name'],
      buckets: QUEUE_BUCKETS,
      registers,
    }),
    unfinishedWork: new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help: 'How many seconds of work has been done that is in progress and hasn\'t been observed by work_duration. Large values indicate stuck threads.',
      labelNames: ['name'],
      registers,
      collect: fromQueues((q) => q.unfinishedWorkSeconds()),
    }),
    longestRunningProcessor: new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds has the longest running processor for workqueue been running.',
      labelNames: ['name'],
      registers,
      collect: fromQueues((q) => q.longestRunningProcessorSeconds()),
    }),
    leaderStatus: new Gauge({
      name: 'leader_election_master_status',
      help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. \'name\' is the string used to identify the lease.',
      labelNames: ['name'],
      registers,
    }),
    informerLists: new Counter({ name: 'runtime_informer_lists_total', help: 'Full lists (initial and re-lists) done by an informer', labelNames: ['informer'], registers }),
    informerWatchRestarts: new Counter({
      name: 'runtime_informer_watch_restarts_total',
      help: 'Watches an informer restarted, by reason (closed, error, gone, watchdog)',
      labelNames: ['informer', 'reason'],
      registers,
    }),
    informerSynced: new Gauge({ name: 'runtime_informer_synced', help: '1 once an informer has completed its first list', labelNames: ['informer'], registers }),
    informerObjects: new Gauge({ name: 'runtime_informer_cached_objects', help: 'Objects in an informer\'s cache', labelNames: ['informer'], registers }),
    queues,
  };
  cache.set(registry, metrics);
  return metrics;
}

/**
 * Reports `queue` under `name` (the counters and histograms through the returned observer, the
 * gauges at scrape time). Returns the observer to pass to the queue, and a function that stops
 * reporting the queue and drops its gauge series.
 */
export function workQueueMetrics(metrics: RuntimeMetrics, name: string): { observer: WorkQueueObserver; attach(queue: WorkQueue<string>): () => void } {
  const labels = { name };
  metrics.queueAdds.inc(labels, 0);
  metrics.queueRetries.inc(labels, 0);
  return {
    observer: {
      added: () => metrics.queueAdds.inc(labels),
      retried: () => metrics.queueRetries.inc(labels),
      started: (waitedMs) => metrics.queueDuration.observe(labels, waitedMs / 1000),
      finished: (workedMs) => metrics.workDuration.observe(labels, workedMs / 1000),
    },
    attach(queue) {
      metrics.queues.set(name, queue);
      return () => {
        if (metrics.queues.get(name) !== queue) return;
        metrics.queues.delete(name);
        metrics.queueDepth.remove(labels);
        metrics.unfinishedWork.remove(labels);
        metrics.longestRunningProcessor.remove(labels);
      };
    },
  };
}

/** A metric that keeps its Prometheus text exposition formatted (UTF-8, no final newline) between changes. */
export interface PreformattedMetric {
  prometheusBytes(): Buffer;
}

function isPreformatted(metric: object): metric is PreformattedMetric {
  return typeof (metric as Partial<PreformattedMetric>).prometheusBytes === 'function';
}

// prom-client's escaping (registry.js), so a kept line is byte for byte what the registry prints.
const escapeText = (text: string) => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabelValue = (value: string) => escapeText(value).replace(/"/g, '\\"');
function sampleValue(value: number): string {
  if (Number.isNaN(value)) return 'Nan';
  if (!Number.isFinite(value)) return value < 0 ? '-Inf' : '+Inf';
  return `${value}`;
}

/**
 * A gauge whose series are set and removed by a caller-chosen key, each kept as its formatted
 * exposition line, and the whole family's text kept as bytes until a series changes. For large,
 * slowly changing families (the per-object state metrics: ~12,000 series at 1,000 objects):
 * formatting them at every scrape cost ~45 ms of CPU per scrape, and a scrape's text (1.4 MB) is
 * allocated outside V8's young generation, so frequent scrapes grew the heap until a full GC.
 * `registry.metrics()` still works (through `get()`); `prometheusExpositionParts` uses the kept bytes.
 * `set`/`inc`/`remove` by labels are not for this gauge: use `put` and `drop`.
 */
export class KeyedGauge<T extends string> extends Gauge<T> {
  private readonly samples = new Map<string, { labels: Partial<Record<T, string>>; value: number; line: string }>();
  private bytes: Buffer | undefined;
  // prom-client's typings do not declare the metric's name and help; kept here for the text.
  private readonly metricName: string;
  private readonly metricHelp: string;

  /** `beforeRead`: brings the series up to date, called whenever they are read (a scrape). */
  constructor(
    configuration: GaugeConfiguration<T>,
    private readonly beforeRead: () => void = () => {},
  ) {
    super(configuration);
    this.metricName = configuration.name;
    this.metricHelp = configuration.help;
  }

  /** Sets the series `key` to `labels` and `value` (a no-op when already so). */
  put(key: string, labels: Partial<Record<T, string>>, value: number): void {
    const existing = this.samples.get(key);
    if (existing && existing.value === value) return;
    const formatted = Object.entries<string | undefined>(labels).map(([name, labelValue]) => `${name}="${escapeLabelValue(labelValue ?? '')}"`);
    const line = `${this.metricName}${formatted.length ? `{${formatted.join(',')}}` : ''} ${sampleValue(value)}`;
    this.samples.set(key, { labels, value, line });
    this.bytes = undefined;
  }

  drop(key: string): void {
    if (this.samples.delete(key)) this.bytes = undefined;
  }

  override async get() {
    this.beforeRead();
    const metric = await super.get();
    return { ...metric, values: [...this.samples.values()].map(({ labels, value }) => ({ labels, value })) };
  }

  prometheusBytes(): Buffer {
    this.beforeRead();
    if (this.bytes === undefined) {
      const lines = [`# HELP ${escapeText(this.metricName)} ${escapeText(this.metricHelp)}`, `# TYPE ${escapeText(this.metricName)} gauge`];
      for (const { line } of this.samples.values()) lines.push(line);
      this.bytes = Buffer.from(lines.join('\n'), 'utf8');
    }
    return this.bytes;
  }
}

/**
 * `registry.metrics()` in the Prometheus text format as parts to send in order: a
 * `PreformattedMetric`'s kept bytes as they are (not copied into one string per scrape), the other
 * metrics formatted by the registry. The registry's default labels (`setDefaultLabels`, which the
 * operator does not use) are not added to kept text; OpenMetrics falls back to the registry.
 */
export async function prometheusExpositionParts(registry: Registry): Promise<Array<string | Buffer>> {
  if (registry.contentType !== Registry.PROMETHEUS_CONTENT_TYPE) return [await registry.metrics()];
  const families = await Promise.all(registry.getMetricsAsArray().map((metric) => (isPreformatted(metric) ? metric.prometheusBytes() : registry.getSingleMetricAsString(metric.name))));
  const parts: Array<string | Buffer> = [];
  let text = '';
  for (const [index, family] of families.entries()) {
    if (index > 0) text += '\n\n';
    if (typeof family === 'string') text += family;
    else {
      if (text) parts.push(text);
      parts.push(family);
      text = '';
    }
  }
  parts.push(`${text}\n`);
  return parts;
}

/** The parts of `prometheusExpositionParts` as one string (what `registry.metrics()` gives). */
export async function prometheusExposition(registry: Registry): Promise<string> {
  return (await prometheusExpositionParts(registry)).map((part) => (typeof part === 'string' ? part : part.toString('utf8'))).join('');
}
