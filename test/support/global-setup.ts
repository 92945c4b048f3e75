/**
 * Jest global setup for the integration suites: one PostgreSQL for the whole run (`DATABASE_URL`
 * when set, else embedded), shared with workers through the environment.
 */
import { startEmbeddedPostgres, type PostgresServer } from './embedded-postgres.js';

declare global {
  // eslint-disable-next-line no-var
  var __realmOperatorPostgres: PostgresServer | undefined;
}

export default async function globalSetup(): Promise<void> {
  if (process.env.DATABASE_URL) {
    process.env.REALM_OPERATOR_TEST_ADMIN_URL = process.env.DATABASE_URL;
    return;
  }
  const started = performance.now();
  const server = await startEmbeddedPostgres();
  globalThis.__realmOperatorPostgres = server;
  process.env.REALM_OPERATOR_TEST_ADMIN_URL = server.adminURL;
  process.stderr.write(`\nembedded PostgreSQL on 127.0.0.1:${server.port} (started in ${Math.round(performance.now() - started)} ms)\n`);
}
