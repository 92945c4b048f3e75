/**
 * `make chart`: renders charts/realm-operator/ from deploy/base (and the CRDs it includes), so the
 * Helm chart and the kustomize manifests cannot drift: templates/ is `kubectl kustomize
 * deploy/base` with the few values users set turned into template expressions, crds/ the CRDs as
 * they are. With default values and `--namespace realm-operator-system --set createNamespace=true
 * --include-crds`, `helm template` prints the same objects as `kubectl kustomize deploy/base`
 * (test/integration/helm-chart.test.ts checks both that and that this script's output is what
 * is committed).
 *
 *   npx tsx hack/generate-chart.ts [--out <dir>]     (default charts/realm-operator)
 *
 * kubectl: $REALM_OPERATOR_TEST_KUBECTL, else the one hack/kube-assets.sh provides.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';

const ROOT = path.resolve(import.meta.dirname, '..');
const BASE_NAMESPACE = 'realm-operator-system';

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** What `values.yaml` holds, and where each value came from in deploy/base (its default). */
export interface ChartValues {
  createNamespace: boolean;
  replicaCount: number;
  image: { repository: string; tag: string; pullPolicy: string };
  publishedRealmDomains: string;
  databaseSecret: { name: string; key: string };
  resources: unknown;
  finalizerPolicy: { enabled: boolean };
}

/** deploy/base's admission policy (finalizer-policy.yaml): rendered only with finalizerPolicy.enabled, for clusters older than 1.36. */
const FINALIZER_POLICY_KINDS = new Set(['MutatingAdmissionPolicy', 'MutatingAdmissionPolicyBinding']);

/** Template expressions stand in the YAML as unique plain scalars until they are written out. */
class Placeholders {
  private readonly expressions: string[] = [];
  /** A scalar rendered as `{{ expression }}`. */
  scalar(expression: string): string {
    this.expressions.push(`{{ ${expression} }}`);
    return `__HELM_${this.expressions.length - 1}__`;
  }
  /** A mapping rendered with toYaml, indented under its key. */
  block(valuePath: string): string {
    this.expressions.push(`\0block:${valuePath}`);
    return `__HELM_${this.expressions.length - 1}__`;
  }
  substitute(yaml: string): string {
    return yaml.replace(/^( *)(- )?([^\n]*?: )?__HELM_(\d+)__$/gm, (_line, indent: string, dash: string | undefined, key: string | undefined, index: string) => {
      const expression = this.expressions[Number(index)]!;
      if (expression.startsWith('\0block:')) {
        const width = indent.length + (dash ? 2 : 0) + 2;
        return `${indent}${dash ?? ''}${key!.trimEnd()}\n${' '.repeat(width - 2)}{{- toYaml ${expression.slice('\0block:'.length)} | nindent ${width} }}`;
      }
      return `${indent}${dash ?? ''}${key ?? ''}${expression}`;
    });
  }
}

function kubectlPath(): string {
  if (process.env.REALM_OPERATOR_TEST_KUBECTL) return process.env.REALM_OPERATOR_TEST_KUBECTL;
  const assets = execFileSync('bash', [path.join(ROOT, 'hack/kube-assets.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').at(-1)!;
  return path.join(assets, 'kubectl');
}

/** `kubectl kustomize deploy/base`, as objects. */
export function kustomizeBase(kubectl = kubectlPath()): KubeObject[] {
  const rendered = execFileSync(kubectl, ['kustomize', path.join(ROOT, 'deploy/base')], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return parseAllDocuments(rendered).map((d) => d.toJS() as KubeObject).filter(Boolean);
}

function fileName(object: KubeObject): string {
  const kind = object.kind.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase();
  return `${kind}-${object.metadata.name}.yaml`;
}

interface Container {
  name: string;
  image: string;
  imagePullPolicy?: string;
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  resources?: unknown;
}

/** Replaces the deploy/base fields users set with placeholders, recording their deploy/base values as the defaults in `values`. */
function templatize(object: KubeObject, holes: Placeholders, values: Partial<ChartValues>): void {
  if (object.metadata.namespace === BASE_NAMESPACE) object.metadata.namespace = holes.scalar('.Release.Namespace');
  for (const subject of (object.subjects as { namespace?: string }[] | undefined) ?? []) {
    if (subject.namespace === BASE_NAMESPACE) subject.namespace = holes.scalar('.Release.Namespace');
  }
  if (object.kind !== 'Deployment') return;
  const spec = object.spec as { replicas: number; template: { spec: { containers: Container[] } } };
  values.replicaCount = spec.replicas;
  spec.replicas = holes.scalar('.Values.replicaCount') as unknown as number;
  const container = spec.template.spec.containers.find((c) => c.name === 'operator');
  if (!container) throw new Error('deploy/base: the Deployment has no container named operator');
  const colon = container.image.lastIndexOf(':');
  values.image = { repository: container.image.slice(0, colon), tag: container.image.slice(colon + 1), pullPolicy: container.imagePullPolicy ?? 'IfNotPresent' };
  container.image = holes.scalar('printf "%s:%s" .Values.image.repository .Values.image.tag | quote');
  container.imagePullPolicy = holes.scalar('.Values.image.pullPolicy');
  for (const env of container.env ?? []) {
    if (env.name === 'PUBLISHED_REALM_DOMAINS') {
      values.publishedRealmDomains = env.value!;
      env.value = holes.scalar('.Values.publishedRealmDomains | quote');
    }
    const secret = env.valueFrom?.secretKeyRef;
    if (env.name === 'DATABASE_URL' && secret) {
      values.databaseSecret = { name: secret.name, key: secret.key };
      secret.name = holes.scalar('.Values.databaseSecret.name');
      secret.key = holes.scalar('.Values.databaseSecret.key');
    }
  }
  values.resources = container.resources;
  container.resources = holes.block('.Values.resources');
}

const HEADER = '# Generated by hack/generate-chart.ts from deploy/base (`make chart`); do not edit.\n';

/** The chart's files (path relative to the chart → content). */
export function renderChart(objects: KubeObject[], version: string): Map<string, string> {
  const files = new Map<string, string>();
  const values: Partial<ChartValues> = { createNamespace: false };
  for (const object of objects) {
    if (object.kind === 'CustomResourceDefinition') {
      files.set(`crds/${object.metadata.name}.yaml`, HEADER + stringify(object, { lineWidth: 0 }));
      continue;
    }
    if (object.kind === 'Namespace') {
      if (object.metadata.name !== BASE_NAMESPACE) throw new Error(`deploy/base: unexpected Namespace ${object.metadata.name}`);
      const holes = new Placeholders();
      object.metadata.name = holes.scalar('.Release.Namespace');
      files.set('templates/namespace.yaml', `${HEADER}{{- if .Values.createNamespace }}\n${holes.substitute(stringify(object, { lineWidth: 0 }))}{{- end }}\n`);
      continue;
    }
    const holes = new Placeholders();
    templatize(object, holes, values);
    const yaml = holes.substitute(stringify(object, { lineWidth: 0 }));
    if (FINALIZER_POLICY_KINDS.has(object.kind)) {
      values.finalizerPolicy = { enabled: true };
      files.set(`templates/${fileName(object)}`, `${HEADER}{{- if .Values.finalizerPolicy.enabled }}\n${yaml}{{- end }}\n`);
      continue;
    }
    files.set(`templates/${fileName(object)}`, HEADER + yaml);
  }
  for (const key of ['replicaCount', 'image', 'publishedRealmDomains', 'databaseSecret', 'resources', 'finalizerPolicy'] as const) {
    if (values[key] === undefined) throw new Error(`deploy/base no longer has what values.${key} replaces; update hack/generate-chart.ts`);
  }
  const comments: Record<keyof ChartValues, string> = {
    createNamespace: 'Create the release namespace (as deploy/base does); with false, `helm install --create-namespace` or an existing one.',
    replicaCount: 'Operator pods: one leads (Lease realm-operator-leader), the others take over within ~15 s.',
    image: 'The operator image.',
    publishedRealmDomains: 'PUBLISHED_REALM_DOMAINS: hosts published realms may use (a host or its subdomains), comma-separated.',
    databaseSecret: 'The Secret (in the release namespace) holding the PostgreSQL connection string.',
    resources: 'The operator container\'s resources.',
    finalizerPolicy: 'The MutatingAdmissionPolicy that puts the unpublish finalizer on every new PublishedRealm (one API write fewer per publish; Kubernetes >= 1.36). With false (older clusters) the operator adds it itself. With the operator limited to one namespace (WATCH_NAMESPACE), limit the binding to it too (docs/helm.md).',
  };
  const valuesYAML = (Object.keys(comments) as (keyof ChartValues)[])
    .map((key) => `# ${comments[key]}\n${stringify({ [key]: values[key] }, { lineWidth: 0 })}`)
    .join('');
  files.set('values.yaml', HEADER + valuesYAML);
  files.set(
    'Chart.yaml',
    HEADER +
      stringify({
        apiVersion: 'v2',
        name: 'realm-operator',
        description: 'Kubernetes operator for Boxel published realms (PublishedRealm, Realm), rendered from deploy/base',
        type: 'application',
        version: version.replace(/^v/, ''),
        appVersion: values.image!.tag,
      }, { lineWidth: 0 }),
  );
  files.set('.helmignore', `${HEADER}*.orig\n*.tmp\n`);
  return files;
}

/** Writes the chart into `dir`, replacing what was there. */
export async function writeChart(dir: string, files: Map<string, string>): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  for (const [file, content] of files) {
    await fs.mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await fs.writeFile(path.join(dir, file), content);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  const outFlag = process.argv.indexOf('--out');
  const out = outFlag >= 0 ? path.resolve(process.argv[outFlag + 1]!) : path.join(ROOT, 'charts/realm-operator');
  const pkg = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  await writeChart(out, renderChart(kustomizeBase(), pkg.version));
  process.stdout.write(`wrote ${path.relative(process.cwd(), out) || out}\n`);
}
