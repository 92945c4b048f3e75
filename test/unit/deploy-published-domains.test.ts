/**
 * deploy/base sets the published-realm domains, and the shipped sample PublishedRealm publishes on a
 * host they allow (otherwise the sample would be Stalled NotAuthorized on a fresh install).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { loadOperatorConfig } from '../../src/cli/operator-config.js';
import { checkPublishedRealmDomain } from '../../src/wire/publish-policy.js';

const deploy = path.resolve(import.meta.dirname, '../../deploy');

async function operatorEnv(): Promise<Record<string, string>> {
  const docs = parseAllDocuments(await fs.readFile(path.join(deploy, 'base/deployment.yaml'), 'utf8')).map((d) => d.toJS());
  const deployment = docs.find((d) => d?.kind === 'Deployment' && d.metadata?.name === 'realm-operator');
  const container = deployment.spec.template.spec.containers.find((c: { name: string }) => c.name === 'operator');
  const plain = (container.env as Array<{ name: string; value?: string }>).filter((e) => typeof e.value === 'string');
  return Object.fromEntries(plain.map((e) => [e.name, e.value!]));
}

describe('deploy/base published-realm domains', () => {
  test('the operator is given published-realm domains, and the sample PublishedRealm is under them', async () => {
    const env = await operatorEnv();
    const config = loadOperatorConfig({}, { ...env, DATABASE_URL: 'postgres://x@h/db' });
    expect(config.publishedRealmDomains.length).toBeGreaterThan(0);
    const sample = parse(await fs.readFile(path.join(deploy, 'samples/published-realm.yaml'), 'utf8')) as { spec: { publishedRealmURL: string } };
    expect(checkPublishedRealmDomain(sample.spec.publishedRealmURL, config.publishedRealmDomains)).toBeUndefined();
    // The kind overlay, where it sets its own domains, allows the sample too.
    const kind = await fs.readFile(path.join(deploy, 'kind/kustomization.yaml'), 'utf8');
    for (const [, value] of kind.matchAll(/name: PUBLISHED_REALM_DOMAINS\s+value: "?([^"\n]+)"?/g)) {
      const domains = loadOperatorConfig({}, { PUBLISHED_REALM_DOMAINS: value!, REALMS_ROOT: '/realms', DATABASE_URL: 'postgres://x@h/db' }).publishedRealmDomains;
      expect(checkPublishedRealmDomain(sample.spec.publishedRealmURL, domains)).toBeUndefined();
    }
    // And the rule is really on: a host elsewhere is refused.
    expect(checkPublishedRealmDomain('http://elsewhere.example/blog/', config.publishedRealmDomains)?.rule).toBe('published-realm-domain');
  });
});
