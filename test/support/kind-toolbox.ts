/**
 * A toolbox pod in the operator's namespace, from the operator's own image, as an operator-side
 * tool would run: it mounts the realms volume read-write and has the operator's database Secret,
 * so the suite writes source realms' files where the operator reads them and checks the database
 * from inside the cluster (`kubectl exec ... node`). Restricted Pod Security like every pod there.
 */
import { applyObjects, kubectl, operatorImage, randomSuffix, REALMS_ROOT, SYSTEM_NAMESPACE } from './kind.js';

/** Resolves modules from the image's working directory (/app), where the operator's node_modules are. */
const PRELUDE = `import { createRequire } from 'node:module';
import fs from 'node:fs/promises';
import path from 'node:path';
const require = createRequire(process.cwd() + '/');
`;

export class Toolbox {
  private constructor(readonly name: string) {}

  static async start(purpose: string): Promise<Toolbox> {
    const name = `kind-toolbox-${purpose}-${randomSuffix()}`;
    await applyObjects({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: SYSTEM_NAMESPACE, labels: { 'app.kubernetes.io/name': 'realm-operator-kind-toolbox' } },
      spec: {
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 2,
        securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name: 'toolbox',
            image: await operatorImage(),
            imagePullPolicy: 'Never',
            // PID 1 ignores SIGTERM unless it handles it.
            command: ['node', '-e', "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1 << 30);"],
            env: [{ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'realm-operator-database', key: 'url' } } }],
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            volumeMounts: [{ name: 'realms', mountPath: REALMS_ROOT }],
            resources: { requests: { cpu: '10m', memory: '64Mi' } },
          },
        ],
        volumes: [{ name: 'realms', persistentVolumeClaim: { claimName: 'realms' } }],
      },
    });
    const toolbox = new Toolbox(name);
    const waited = await kubectl(['wait', '-n', SYSTEM_NAMESPACE, '--for=condition=Ready', `pod/${name}`, '--timeout=120s']);
    if (waited.code !== 0) {
      const described = await kubectl(['describe', 'pod', '-n', SYSTEM_NAMESPACE, name]);
      await toolbox.delete();
      throw new Error(`toolbox pod ${name} not Ready: ${waited.stderr}\n${described.stdout.slice(-3000)}`);
    }
    return toolbox;
  }

  /** Runs an ES module script with node in the toolbox; returns its stdout. */
  async node(script: string): Promise<string> {
    const result = await kubectl(['exec', '-i', '-n', SYSTEM_NAMESPACE, this.name, '--', 'node', '--input-type=module', '-'], { input: PRELUDE + script, timeoutMs: 120_000 });
    if (result.code !== 0) throw new Error(`node in ${this.name} failed (${result.code}): ${result.stderr.slice(0, 3000)}`);
    return result.stdout;
  }

  /** One query as the operator's database user; the rows. */
  async sql<T = Record<string, unknown>>(query: string, params: unknown[] = []): Promise<T[]> {
    const out = await this.node(`
const pg = require('pg');
const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
try {
  const result = await client.query(${JSON.stringify(query)}, ${JSON.stringify(params)});
  process.stdout.write(JSON.stringify(result.rows));
} finally {
  await client.end();
}
`);
    return JSON.parse(out) as T[];
  }

  /** Writes `files` (path → content) below `dir` (absolute, inside the realms volume). */
  async writeFiles(dir: string, files: Record<string, string>): Promise<void> {
    await this.node(`
const dir = ${JSON.stringify(dir)};
const files = ${JSON.stringify(files)};
for (const [rel, content] of Object.entries(files)) {
  const file = path.join(dir, rel);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, content);
}
`);
  }

  /** Whether `file` exists (lstat: a dangling symlink counts). */
  async exists(file: string): Promise<boolean> {
    const out = await this.node(`process.stdout.write(String(await fs.lstat(${JSON.stringify(file)}).then(() => true, () => false)));`);
    return out.trim() === 'true';
  }

  async remove(file: string): Promise<void> {
    await this.node(`await fs.rm(${JSON.stringify(file)}, { recursive: true, force: true });`);
  }

  /**
   * Registers a source realm as Boxel's create-realm does, with the operator's own CLI
   * (`realm-operator seed-sample`): its files under the realms root, its registry row, realm-owner for
   * `@<owner>:localhost` and publishable. Returns its directory.
   */
  async createSourceRealm(sourceURL: string, owner: string): Promise<string> {
    const result = await kubectl(
      ['exec', '-n', SYSTEM_NAMESPACE, this.name, '--', 'node', 'dist/cli/main.js', 'seed-sample', '--realms-root', REALMS_ROOT, '--source-url', sourceURL, '--owner', owner],
      { timeoutMs: 120_000 },
    );
    if (result.code !== 0) throw new Error(`seed-sample ${sourceURL} failed (${result.code}): ${result.stderr.slice(0, 3000)}`);
    const match = / at (\/\S+)\s*$/.exec(result.stdout.trim());
    if (!match) throw new Error(`seed-sample printed no directory: ${result.stdout}`);
    return match[1]!;
  }

  /** Removes a source realm createSourceRealm made: its rows and `dir` (its directory, or the one holding it). */
  async removeSourceRealm(sourceURL: string, dir: string): Promise<void> {
    await this.node(`
const pg = require('pg');
const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
try {
  const url = ${JSON.stringify(sourceURL)};
  await client.query("DELETE FROM realm_user_permissions WHERE realm_url = $1", [url]);
  await client.query("DELETE FROM realm_metadata WHERE url = $1", [url]);
  await client.query("DELETE FROM realm_registry WHERE url = $1 AND kind = 'source'", [url]);
} finally {
  await client.end();
}
await fs.rm(${JSON.stringify(dir)}, { recursive: true, force: true });
`);
  }

  async delete(): Promise<void> {
    await kubectl(['delete', 'pod', '-n', SYSTEM_NAMESPACE, this.name, '--wait=false', '--ignore-not-found']);
  }
}
