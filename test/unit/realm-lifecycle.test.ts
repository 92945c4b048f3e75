import type { PublishedRealmSpecInput } from '../../src/api/v1alpha1/published-realm-types.js';
import type { Realm } from '../../src/api/v1alpha1/realm-types.js';
import { INITIAL_INDEX_JSON, initialRealmJSON, RealmRefusedError, sourceRealmLocation } from '../../src/dataplane/realm-lifecycle.js';
import { resolveSourceRealmURL } from '../../src/reconciler/realm/source-ref.js';

describe('sourceRealmLocation (Boxel create-realm\'s URL and directory)', () => {
  test('<server path>/<owner localpart>/<endpoint>/ and <owner>/<endpoint>', () => {
    expect(sourceRealmLocation('https://app.boxel.ai/', '@alice:boxel.ai', 'notes')).toEqual({ url: 'https://app.boxel.ai/alice/notes/', ownerUsername: 'alice', diskId: 'alice/notes' });
    // A server URL with a path keeps it, as new URL('<path>/<owner>/<endpoint>/', serverURL) does.
    expect(sourceRealmLocation('http://localhost:4201/realms/', '@bob.b:localhost:8008', 'x-1').url).toBe('http://localhost:4201/realms/bob.b/x-1/');
  });

  test('an owner localpart that is not one safe path segment is refused naming spec.owner', () => {
    for (const owner of ['@realm/x:boxel.ai', '@..:boxel.ai', '@.:boxel.ai']) {
      let error: unknown;
      try {
        sourceRealmLocation('https://app.boxel.ai/', owner, 'notes');
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(RealmRefusedError);
      expect(error).toMatchObject({ reason: 'UnsafeLocation', field: 'spec.owner' });
    }
  });
});

describe('the files Boxel\'s create-realm writes', () => {
  test('realm.json: icon and background only when given; compact JSON and a newline (fs-extra writeJSONSync)', () => {
    expect(initialRealmJSON({ name: 'N' })).toBe('{"data":{"type":"card","attributes":{"cardInfo":{"name":"N"}},"meta":{"adoptsFrom":{"module":"@cardstack/base/realm-config","name":"RealmConfig"}}}}\n');
    expect(JSON.parse(initialRealmJSON({ name: 'N', iconURL: 'i', backgroundURL: 'b' })).data.attributes).toEqual({ cardInfo: { name: 'N' }, iconURL: 'i', backgroundURL: 'b' });
    expect(JSON.parse(INITIAL_INDEX_JSON)).toEqual({ data: { type: 'card', meta: { adoptsFrom: { module: '@cardstack/base/workspace', name: 'Workspace' } } } });
  });
});

describe('resolveSourceRealmURL (PublishedRealm spec.sourceRealmRef)', () => {
  const byRef = { sourceRealmRef: { name: 'notes' }, publishedRealmURL: 'http://p/', suspend: false } as PublishedRealmSpecInput;
  const realm = (extra: Partial<Realm['metadata']>, status?: Realm['status']): Realm => ({
    apiVersion: 'realm-operator.dev/v1alpha1',
    kind: 'Realm',
    metadata: { name: 'notes', namespace: 'ns', generation: 1, ...extra },
    spec: {},
    ...(status ? { status } : {}),
  });
  const readyStatus = { url: 'http://s/alice/notes/', conditions: [{ type: 'Ready', status: 'True' as const, reason: 'Created', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] };

  test('a URL is used as it is; a Ready Realm gives its status.url', async () => {
    const byURL = { ...byRef, sourceRealmRef: undefined, sourceRealmURL: 'http://s/a/' } as PublishedRealmSpecInput;
    expect(await resolveSourceRealmURL(byURL, 'ns', undefined)).toMatchObject({ ok: true, spec: { sourceRealmURL: 'http://s/a/' } });
    expect(await resolveSourceRealmURL(byRef, 'ns', async () => realm({}, readyStatus))).toMatchObject({ ok: true, spec: { sourceRealmURL: 'http://s/alice/notes/' } });
  });

  test('a missing or deleting Realm stalls (not transient); one not Ready yet is waited for', async () => {
    expect(await resolveSourceRealmURL(byRef, 'ns', async () => undefined)).toMatchObject({ ok: false, reason: 'SourceRealmNotFound', transient: false });
    expect(await resolveSourceRealmURL(byRef, 'ns', async () => realm({ deletionTimestamp: '2026-01-01T00:00:00Z' }, readyStatus))).toMatchObject({
      ok: false,
      reason: 'SourceRealmDeleting',
      transient: false,
    });
    expect(await resolveSourceRealmURL(byRef, 'ns', async () => realm({}))).toMatchObject({ ok: false, reason: 'SourceRealmNotReady', transient: true });
    const off = await resolveSourceRealmURL(byRef, 'ns', undefined);
    expect(off).toMatchObject({ ok: false, reason: 'SourceRealmNotFound' });
    if (!off.ok) expect(off.message).toMatch(/^spec\.sourceRealmRef: .*Realm controller/);
  });
});
