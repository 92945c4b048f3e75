/**
 * A last line of defence for a long-running process: an `unhandledRejection` or
 * `uncaughtException` is logged at error level with its stack, counted in a metric, and reported
 * (typically to {@link Manager.markUnhealthy}, which fails `/readyz` with the reason) instead of
 * Node's default of exiting at once with a stack trace nobody collects. Whatever leaked the error
 * still needs fixing; the guard makes it visible without taking every other object down with it.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

export type ProcessFaultKind = 'unhandledRejection' | 'uncaughtException';

export interface ProcessGuardOptions {
  logger: Logger;
  /** Called with a one-line reason for each fault (e.g. `manager.markUnhealthy`). */
  onFault(reason: string, kind: ProcessFaultKind, error: unknown): void;
  /** Where to count faults, as `<metricName>{kind}`. */
  metricsRegistry?: Registry;
  metricName?: string;
}

/** Installs the guard; returns a function that removes it. */
export function installProcessGuard(options: ProcessGuardOptions): () => void {
  const registry = options.metricsRegistry;
  const name = options.metricName ?? 'process_unhandled_errors_total';
  const counter = registry
    ? ((registry.getSingleMetric(name) as Counter<'kind'> | undefined) ??
      new Counter({ name, help: 'Unhandled promise rejections and uncaught exceptions the process survived, by kind', labelNames: ['kind'], registers: [registry] }))
    : undefined;
  counter?.inc({ kind: 'unhandledRejection' }, 0);
  counter?.inc({ kind: 'uncaughtException' }, 0);
  const handle = (kind: ProcessFaultKind) => (error: unknown) => {
    const summary = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    options.logger.error({ err: error instanceof Error ? error : new Error(summary), kind }, `${kind}: ${summary} — a bug; the process keeps running but reports not ready`);
    counter?.inc({ kind });
    try {
      options.onFault(`${kind}: ${summary}`, kind, error);
    } catch (failure) {
      options.logger.error({ err: failure }, 'the process guard could not report a fault');
    }
  };
  const onRejection = handle('unhandledRejection');
  const onException = handle('uncaughtException');
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
