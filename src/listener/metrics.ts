/** The listener's Prometheus metrics; one set per registry, shared by listeners in one process. */
import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client';

export interface ListenerMetrics {
  notifications: Counter<'channel'>;
  /** Notifications acted on not at all: `reason` is `malformed` or `unknown-realm`. */
  ignored: Counter<'channel' | 'reason'>;
  /** Per-path changes whose path could not be matched as written (see `localPathMismatch`), and case variants dropped. */
  unmatchedPaths: Counter<'channel' | 'reason'>;
  reconnects: Counter;
  resyncs: Counter;
  heartbeatFailures: Counter;
  fenced: Counter;
  ackSeconds: Histogram;
  ready: Gauge<'replica'>;
}

const cache = new WeakMap<Registry, ListenerMetrics>();

export function listenerMetrics(registry: Registry = globalRegistry): ListenerMetrics {
  const existing = cache.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const metrics: ListenerMetrics = {
    notifications: new Counter({ name: 'realm_listener_notifications_total', help: 'NOTIFY messages received, by channel', labelNames: ['channel'], registers }),
    ignored: new Counter({
      name: 'realm_listener_notifications_ignored_total',
      help: 'Notifications that dropped nothing: malformed payloads and realms this replica has no cache for, by channel and reason',
      labelNames: ['channel', 'reason'],
      registers,
    }),
    unmatchedPaths: new Counter({
      name: 'realm_listener_unmatched_paths_total',
      help: 'Per-path changes whose path was not a canonical realm-local path (the whole realm was dropped instead) or also matched case variants, by reason',
      labelNames: ['channel', 'reason'],
      registers,
    }),
    reconnects: new Counter({ name: 'realm_listener_reconnects_total', help: 'Times the listener connection was re-established', registers }),
    resyncs: new Counter({ name: 'realm_listener_resyncs_total', help: 'Times every cache was dropped after (re)connecting', registers }),
    heartbeatFailures: new Counter({ name: 'realm_listener_heartbeat_failures_total', help: 'Heartbeats that failed or timed out', registers }),
    fenced: new Counter({ name: 'realm_listener_fenced_total', help: 'Times the replica stopped trusting its cache because its lease could not be renewed', registers }),
    ackSeconds: new Histogram({
      name: 'realm_listener_ack_duration_seconds',
      help: 'From receiving a wildcard invalidation to recording its acknowledgement',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    ready: new Gauge({ name: 'realm_listener_ready', help: '1 while the listener is connected, resynced and its lease is valid', labelNames: ['replica'], registers }),
  };
  cache.set(registry, metrics);
  return metrics;
}
