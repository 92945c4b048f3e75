import { ConfigError } from '../../src/cli/config.js';
import { loadOperatorConfig, parseBindAddress, parseDuration } from '../../src/cli/operator-config.js';

const required = { DATABASE_URL: 'postgres://u@127.0.0.1/db', REALMS_ROOT: '/realms' };

describe('operator configuration', () => {
  test('defaults, environment, and flags over environment', () => {
    const config = loadOperatorConfig({ 'ack-wait': '3s', 'max-concurrent-reconciles': '8' }, { ...required, ACK_WAIT: '20s', LEADER_ELECT: 'false', POD_NAME: 'op-1' });
    expect(config).toMatchObject({
      databaseURL: required.DATABASE_URL,
      realmsRoot: '/realms',
      ackWait: 3000,
      maxConcurrentReconciles: 8,
      leaderElection: false,
      identity: 'op-1',
      metricsBindAddress: ':8080',
      healthProbeBindAddress: ':8081',
      resyncPeriod: 600_000,
      watchNamespace: '',
    });
  });

  test('every problem is reported, naming flag and variable', () => {
    let error: unknown;
    try {
      loadOperatorConfig({ 'ack-wait': 'soon', 'metrics-bind-address': 'eighty' }, { REALMS_ROOT: 'relative/path', MAX_CONCURRENT_RECONCILES: '0' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.sort()).toEqual(
      [
        '--database-url / DATABASE_URL: is required',
        '--realms-root / REALMS_ROOT: must be an absolute path',
        '--ack-wait / ACK_WAIT: "soon" is not a duration; use e.g. 500ms, 10s, 2m, 1h',
        '--metrics-bind-address / METRICS_BIND_ADDRESS: must be host:port, :port, or 0 to disable (e.g. :8080, 127.0.0.1:0)',
        '--max-concurrent-reconciles / MAX_CONCURRENT_RECONCILES: must be at least 1',
      ].sort(),
    );
  });

  test('durations and bind addresses', () => {
    expect([parseDuration('250ms'), parseDuration('1.5s'), parseDuration('2m'), parseDuration('1h'), parseDuration('5')]).toEqual([250, 1500, 120_000, 3_600_000, undefined]);
    expect(parseBindAddress(':8080')).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(parseBindAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseBindAddress('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(parseBindAddress('0')).toBeUndefined();
  });
});

test('leader-election timings must nest like client-go requires', () => {
  expect(() => loadOperatorConfig({ 'leader-election-renew-deadline': '20s' }, required)).toThrow(
    '--leader-election-renew-deadline / LEADER_ELECTION_RENEW_DEADLINE: must be shorter than the lease duration',
  );
  expect(loadOperatorConfig({}, required)).toMatchObject({ leaseDuration: 15_000, renewDeadline: 10_000, retryPeriod: 2_000 });
});
