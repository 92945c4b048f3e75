import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, normalizeBooleanFlags } from '../../src/cli/config.js';
import { loadOperatorConfig, OPERATOR_SETTINGS, operatorPoolConfig, parseBindAddress, parseByteSize, parseDuration } from '../../src/cli/operator-config.js';

const required = { DATABASE_URL: 'postgres://u@127.0.0.1/db', REALMS_ROOT: '/realms' };

describe('operator configuration', () => {
  test('defaults, environment, and flags over environment', () => {
    const config = loadOperatorConfig({ 'ack-wait': '3s', 'max-concurrent-reconciles': '12' }, { ...required, ACK_WAIT: '20s', LEADER_ELECT: 'false', POD_NAME: 'op-1' });
    expect(config).toMatchObject({
      databaseURL: required.DATABASE_URL,
      realmsRoot: '/realms',
      ackWait: 3000,
      maxConcurrentReconciles: 12,
      leaderElection: false,
      identity: 'op-1',
      metricsBindAddress: ':8080',
      healthProbeBindAddress: ':8081',
      resyncPeriod: 600_000,
      watchNamespace: '',
      maxConcurrentStagings: 4,
    });
    expect(loadOperatorConfig({ 'max-concurrent-stagings': '2' }, required).maxConcurrentStagings).toBe(2);
    expect(loadOperatorConfig({}, required).maxConcurrentReconciles).toBe(8);
    expect(() => loadOperatorConfig({}, { ...required, MAX_CONCURRENT_STAGINGS: '0' })).toThrow('--max-concurrent-stagings / MAX_CONCURRENT_STAGINGS: must be at least 1');
  });

  test('warm database connections: 4 by default, 0 allowed, never more than the pool holds', () => {
    const defaults = loadOperatorConfig({}, required);
    expect(defaults.databaseWarmConnections).toBe(4);
    expect(operatorPoolConfig(defaults)).toMatchObject({ connectionString: required.DATABASE_URL, max: 26, min: 4 });
    expect(operatorPoolConfig(loadOperatorConfig({ 'database-warm-connections': '0' }, required)).min).toBe(0);
    // One reconcile at once: a pool of 5, so 8 warm ones would be more than it may open.
    expect(operatorPoolConfig(loadOperatorConfig({ 'max-concurrent-reconciles': '1' }, { ...required, DATABASE_WARM_CONNECTIONS: '8' }))).toMatchObject({ max: 5, min: 5 });
    expect(() => loadOperatorConfig({}, { ...required, DATABASE_WARM_CONNECTIONS: '-1' })).toThrow('--database-warm-connections / DATABASE_WARM_CONNECTIONS: must be at least 0');
    expect(() => loadOperatorConfig({ 'database-warm-connections': 'some' }, required)).toThrow('--database-warm-connections / DATABASE_WARM_CONNECTIONS');
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

describe('realm size limits, hard links and secure metrics', () => {
  test('defaults: 100,000 files, 4 GiB, hard-linked files skipped, plain metrics', () => {
    expect(loadOperatorConfig({}, required)).toMatchObject({
      maxRealmFiles: 100_000,
      maxRealmBytes: 4 * 2 ** 30,
      copyHardLinkedFiles: false,
      metricsSecure: false,
    });
  });

  test('sizes take plain bytes or Ki/Mi/Gi/Ti; flags win over the environment', () => {
    expect(parseByteSize('1048576')).toBe(1_048_576);
    expect([parseByteSize('1Ki'), parseByteSize('512Mi'), parseByteSize('4Gi'), parseByteSize('1Ti')]).toEqual([1024, 512 * 2 ** 20, 4 * 2 ** 30, 2 ** 40]);
    expect([parseByteSize('4G'), parseByteSize('1.5Gi'), parseByteSize('-1'), parseByteSize('lots')]).toEqual([undefined, undefined, undefined, undefined]);
    const config = loadOperatorConfig(
      { 'max-realm-files': '500', 'max-realm-bytes': '2Gi', 'copy-hard-linked-files': 'true' },
      { ...required, MAX_REALM_FILES: '7', MAX_REALM_BYTES: '1Mi', COPY_HARD_LINKED_FILES: 'false' },
    );
    expect(config).toMatchObject({ maxRealmFiles: 500, maxRealmBytes: 2 * 2 ** 30, copyHardLinkedFiles: true });
    expect(loadOperatorConfig({}, { ...required, MAX_REALM_BYTES: '1Mi', COPY_HARD_LINKED_FILES: '1' })).toMatchObject({ maxRealmBytes: 2 ** 20, copyHardLinkedFiles: true });
  });

  test('bad limits are refused naming flag and variable', () => {
    let error: unknown;
    try {
      loadOperatorConfig({ 'max-realm-bytes': '4G', 'max-realm-files': '0' }, { ...required, COPY_HARD_LINKED_FILES: 'maybe' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual(
      expect.arrayContaining([
        '--max-realm-bytes / MAX_REALM_BYTES: "4G" is not a size in bytes; use e.g. 1048576, 512Mi, 4Gi',
        '--max-realm-files / MAX_REALM_FILES: must be at least 1',
        expect.stringMatching(/^--copy-hard-linked-files \/ COPY_HARD_LINKED_FILES: /),
      ]),
    );
  });

  test('a metrics certificate needs its key, and the paths are absolute', () => {
    expect(() => loadOperatorConfig({ 'metrics-secure': 'true', 'metrics-cert-file': '/tls/tls.crt' }, required)).toThrow(
      '--metrics-cert-file / METRICS_CERT_FILE and --metrics-key-file / METRICS_KEY_FILE: give both, or neither for a self-signed certificate generated at start-up',
    );
    expect(() => loadOperatorConfig({ 'metrics-cert-file': 'tls.crt', 'metrics-key-file': '/tls/tls.key' }, required)).toThrow('--metrics-cert-file / METRICS_CERT_FILE: must be an absolute path');
    expect(loadOperatorConfig({}, { ...required, METRICS_SECURE: 'true', METRICS_CERT_FILE: '/tls/tls.crt', METRICS_KEY_FILE: '/tls/tls.key' })).toMatchObject({
      metricsSecure: true,
      metricsCertFile: '/tls/tls.crt',
      metricsKeyFile: '/tls/tls.key',
    });
  });

  test('bare boolean switches mean true; an explicit value is kept; other flags are untouched', () => {
    const switches = Object.values(OPERATOR_SETTINGS);
    expect(normalizeBooleanFlags(['operator', '--metrics-secure', '--copy-hard-linked-files', '--ack-wait', '1s'], switches)).toEqual([
      'operator',
      '--metrics-secure=true',
      '--copy-hard-linked-files=true',
      '--ack-wait',
      '1s',
    ]);
    expect(normalizeBooleanFlags(['--leader-elect', 'false', '--durable=false', '--metrics-secure'], switches)).toEqual(['--leader-elect=false', '--durable=false', '--metrics-secure=true']);
  });
});

describe('Matrix settings (realm users of published realms)', () => {
  let dir: string;
  let secretFile: string;
  let seedFile: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'operator-config-'));
    secretFile = path.join(dir, 'registration-shared-secret');
    seedFile = path.join(dir, 'realm-secret-seed');
    // As `kubectl create secret --from-file` of an `echo`ed value: with a trailing newline.
    fs.writeFileSync(secretFile, 'the-shared-secret\n');
    fs.writeFileSync(seedFile, 'the seed\r\n');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('none set: no Matrix, publishing works without it', () => {
    expect(loadOperatorConfig({}, required).matrix).toBeUndefined();
  });

  test('the secrets are read from their files (as Secrets are mounted), without the trailing newline', () => {
    const config = loadOperatorConfig({ 'matrix-url': 'http://synapse:8008', 'matrix-registration-secret-file': secretFile }, { ...required, REALM_SECRET_SEED_FILE: seedFile });
    expect(config.matrix).toEqual({ matrixURL: 'http://synapse:8008', registrationSharedSecret: 'the-shared-secret', realmSecretSeed: 'the seed' });
  });

  test('or from plain variables, as Boxel\'s realm server takes them', () => {
    const config = loadOperatorConfig({}, { ...required, MATRIX_URL: 'https://matrix.example/', MATRIX_REGISTRATION_SHARED_SECRET: 's', REALM_SECRET_SEED: 'seed' });
    expect(config.matrix).toEqual({ matrixURL: 'https://matrix.example/', registrationSharedSecret: 's', realmSecretSeed: 'seed' });
  });

  test('the Matrix server name for the realm user\'s permission row: a host with an optional port, refused otherwise', () => {
    expect(loadOperatorConfig({ 'matrix-server-name': 'localhost:8008' }, required).matrixServerName).toBe('localhost:8008');
    expect(loadOperatorConfig({}, { ...required, MATRIX_SERVER_NAME: 'boxel.ai' }).matrixServerName).toBe('boxel.ai');
    expect(() => loadOperatorConfig({ 'matrix-server-name': 'https://boxel.ai/' }, required)).toThrow(/--matrix-server-name \/ MATRIX_SERVER_NAME: must be a Matrix server name/);
  });

  test('publish authorization: on by default, no domains unless given; domains comma-separated, lower-cased; bad ones refused naming flag and variable', () => {
    expect(loadOperatorConfig({}, required)).toMatchObject({ authorizePublishers: true, publishedRealmDomains: [] });
    expect(loadOperatorConfig({}, required).publishedRealmSpaceDomain).toBeUndefined();
    expect(loadOperatorConfig({ 'authorize-publishers': 'false' }, required).authorizePublishers).toBe(false);
    expect(loadOperatorConfig({}, { ...required, AUTHORIZE_PUBLISHERS: '0' }).authorizePublishers).toBe(false);
    expect(loadOperatorConfig({ 'published-realm-domains': 'Boxel.Site, localhost:4205,' }, required).publishedRealmDomains).toEqual(['boxel.site', 'localhost:4205']);
    const fromEnv = loadOperatorConfig({}, { ...required, PUBLISHED_REALM_DOMAINS: 'boxel.site', PUBLISHED_REALM_BOXEL_SPACE_DOMAIN: 'Boxel.Space' });
    expect(fromEnv).toMatchObject({ publishedRealmDomains: ['boxel.site'], publishedRealmSpaceDomain: 'boxel.space' });
    expect(() => loadOperatorConfig({ 'published-realm-domains': 'https://boxel.site/' }, required)).toThrow(/--published-realm-domains \/ PUBLISHED_REALM_DOMAINS: .*must be comma-separated domains/);
    expect(() => loadOperatorConfig({ 'published-realm-space-domain': '*.boxel.space' }, required)).toThrow(/--published-realm-space-domain \/ PUBLISHED_REALM_BOXEL_SPACE_DOMAIN: must be a domain/);
  });

  test("PUBLISHED_REALM_DOMAIN_OVERRIDES (Boxel's JSON object source realm URL -> domain): parsed with canonical keys; what Boxel silently ignores is refused naming the entry", () => {
    expect(loadOperatorConfig({}, required).publishedRealmDomainOverrides).toEqual({});
    const fromEnv = loadOperatorConfig({}, { ...required, PUBLISHED_REALM_DOMAIN_OVERRIDES: '{"https://App.boxel.ai/mike/site/":"www.mikes.example"}' });
    expect(fromEnv.publishedRealmDomainOverrides).toEqual({ 'https://app.boxel.ai/mike/site/': 'www.mikes.example' });
    expect(loadOperatorConfig({ 'published-realm-domain-overrides': '{"http://localhost:4201/a/b/":"http://sites.example:4443"}' }, required).publishedRealmDomainOverrides).toEqual({
      'http://localhost:4201/a/b/': 'http://sites.example:4443',
    });
    expect(() => loadOperatorConfig({}, { ...required, PUBLISHED_REALM_DOMAIN_OVERRIDES: '{nope' })).toThrow(/--published-realm-domain-overrides \/ PUBLISHED_REALM_DOMAIN_OVERRIDES: is not JSON/);
    expect(() => loadOperatorConfig({}, { ...required, PUBLISHED_REALM_DOMAIN_OVERRIDES: '["x"]' })).toThrow(/must be a JSON object from source realm URL to domain/);
    expect(() => loadOperatorConfig({}, { ...required, PUBLISHED_REALM_DOMAIN_OVERRIDES: '{"https://app.boxel.ai/mike/site":"www.mikes.example"}' })).toThrow(
      'a source realm URL ends with "/" (Boxel never matches it otherwise); write "https://app.boxel.ai/mike/site/"',
    );
    expect(() => loadOperatorConfig({}, { ...required, PUBLISHED_REALM_DOMAIN_OVERRIDES: '{"https://app.boxel.ai/mike/site/":7}' })).toThrow('"https://app.boxel.ai/mike/site/": 7 is not a domain');
  });

  test("REALM_SERVER_URL (Boxel's serverURL for Realms without spec.serverURL): optional; a URL Boxel could not serve realms under is refused with the fix", () => {
    expect(loadOperatorConfig({}, required).realmServerURL).toBeUndefined();
    expect(loadOperatorConfig({}, { ...required, REALM_SERVER_URL: 'https://app.boxel.ai/' }).realmServerURL).toBe('https://app.boxel.ai/');
    expect(loadOperatorConfig({ 'realm-server-url': 'http://localhost:4201/' }, required).realmServerURL).toBe('http://localhost:4201/');
    expect(() => loadOperatorConfig({}, { ...required, REALM_SERVER_URL: 'https://app.boxel.ai' })).toThrow(/--realm-server-url \/ REALM_SERVER_URL: .*does not end with "\/"; use "https:\/\/app.boxel.ai\/"/);
    expect(() => loadOperatorConfig({ 'realm-server-url': 'ftp://app.boxel.ai/' }, required)).toThrow(/--realm-server-url \/ REALM_SERVER_URL: .*scheme "ftp" is not allowed/);
  });

  test('a partial set is refused, naming what is missing', () => {
    expect(() => loadOperatorConfig({ 'matrix-url': 'http://synapse:8008' }, required)).toThrow(
      'Matrix is configured only in part: also set --matrix-registration-secret-file / MATRIX_REGISTRATION_SHARED_SECRET_FILE (or MATRIX_REGISTRATION_SHARED_SECRET) and --realm-secret-seed-file / REALM_SECRET_SEED_FILE (or REALM_SECRET_SEED)',
    );
    expect(() => loadOperatorConfig({}, { ...required, REALM_SECRET_SEED: 'seed', MATRIX_REGISTRATION_SHARED_SECRET: 's' })).toThrow('also set --matrix-url / MATRIX_URL (all three');
  });

  test('bad values are refused naming flag and variable: URL, relative path, missing or empty file, file and variable both', () => {
    const empty = path.join(dir, 'empty');
    fs.writeFileSync(empty, '\n');
    let error: unknown;
    try {
      loadOperatorConfig({ 'matrix-url': 'synapse:8008', 'realm-secret-seed-file': 'seed.txt' }, required);
    } catch (e) {
      error = e;
    }
    expect((error as ConfigError).problems).toEqual([
      "--matrix-url / MATRIX_URL: must be the homeserver's http:// or https:// base URL, e.g. http://synapse:8008/",
      '--realm-secret-seed-file / REALM_SECRET_SEED_FILE: must be an absolute path',
    ]);
    try {
      loadOperatorConfig(
        { 'matrix-url': 'http://synapse:8008', 'matrix-registration-secret-file': path.join(dir, 'missing'), 'realm-secret-seed-file': empty },
        { ...required, MATRIX_REGISTRATION_SHARED_SECRET: 's' },
      );
    } catch (e) {
      error = e;
    }
    expect((error as ConfigError).problems).toEqual([
      '--matrix-registration-secret-file / MATRIX_REGISTRATION_SHARED_SECRET_FILE and MATRIX_REGISTRATION_SHARED_SECRET: give one of them, not both',
      `--realm-secret-seed-file / REALM_SECRET_SEED_FILE: ${empty} is empty; put the secret in it`,
    ]);
    expect(() => loadOperatorConfig({ 'matrix-url': 'http://synapse:8008', 'matrix-registration-secret-file': path.join(dir, 'missing') }, { ...required, REALM_SECRET_SEED: 'x' })).toThrow(
      `--matrix-registration-secret-file / MATRIX_REGISTRATION_SHARED_SECRET_FILE: cannot read ${path.join(dir, 'missing')} (ENOENT); mount the Secret there or fix the path`,
    );
  });
});
