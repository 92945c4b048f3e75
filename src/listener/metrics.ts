/** The listener's Prometheus metrics; one set per registry, shared by listeners in one process. */
import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client';

export interface ListenerMetrics {
  notifications: Counter<'channel'>;
  malformed: Counter<'channel'>;
  unknownRealm: Counter<'channel'>;
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
    malformed: new Counter({ name: 'realm_listener_malformed_payloads_total', help: 'NOTIFY payloads that did not parse and were ignored, by channel', labelNames: ['channel'], registers }),
    unknownRealm: new Counter({ name: 'realm_listener_unknown_realm_total', help: 'Notifications for realms this replica does not serve, by channel', labelNames: ['channel'], registers }),
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
