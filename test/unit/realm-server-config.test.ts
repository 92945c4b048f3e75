import { ConfigError } from '../../src/cli/config.js';
import { loadRealmServerConfig } from '../../src/cli/realm-server-command.js';

const base = { 'database-url': 'postgres://u:p@localhost/db', 'realms-root': '/realms' };

test('defaults: serving on :4201, management (metrics, readiness) on :9090, published realms only', () => {
  const config = loadRealmServerConfig(base, {});
  expect(config.bind).toEqual({ host: '0.0.0.0', port: 4201 });
  expect(config.management).toEqual({ host: '0.0.0.0', port: 9090 });
  expect(config.serveSourceRealms).toBe(false);
});

test('flags and environment', () => {
  const config = loadRealmServerConfig({ ...base, 'management-listen': '127.0.0.1:9191', 'serve-source-realms': 'true' }, {});
  expect(config.management).toEqual({ host: '127.0.0.1', port: 9191 });
  expect(config.serveSourceRealms).toBe(true);
  expect(loadRealmServerConfig(base, { SERVE_SOURCE_REALMS: '1', MANAGEMENT_LISTEN_ADDRESS: ':9999' })).toMatchObject({ serveSourceRealms: true, management: { port: 9999 } });
});

test('refuses the serving port as the management port, naming flag, variable and fix', () => {
  expect(() => loadRealmServerConfig({ ...base, listen: ':8080', 'management-listen': '127.0.0.1:8080' }, {})).toThrow(ConfigError);
  expect(() => loadRealmServerConfig({ ...base, listen: ':8080', 'management-listen': '127.0.0.1:8080' }, {})).toThrow(
    /--management-listen \/ MANAGEMENT_LISTEN_ADDRESS: .*serving port.*choose another port/,
  );
  expect(() => loadRealmServerConfig({ ...base, 'management-listen': 'nine' }, {})).toThrow(/--management-listen \/ MANAGEMENT_LISTEN_ADDRESS: must be host:port/);
  expect(() => loadRealmServerConfig({ ...base, 'serve-source-realms': 'maybe' }, {})).toThrow(/--serve-source-realms \/ SERVE_SOURCE_REALMS/);
  // Both on ephemeral ports (tests) is fine.
  expect(loadRealmServerConfig({ ...base, listen: '127.0.0.1:0', 'management-listen': '127.0.0.1:0' }, {}).bind.port).toBe(0);
});
