import { describe, expect, test } from '@jest/globals';
import type { PublishedRealm, PublishedRealmSpec } from '../../src/api/v1alpha1/published-realm-types.js';
import { legacyPublishedForKeys, matchPublishedFor, publishedForKey } from '../../src/reconciler/published-realm/published-for.js';

const realm = (generation: number) => ({ metadata: { uid: 'u-1', generation, name: 'r', namespace: 'ns' } }) as unknown as PublishedRealm;
const spec = { sourceRealmURL: 'http://s/a/', publishedRealmURL: 'http://p/a/', revision: '1', suspend: false } as PublishedRealmSpec;

describe('publishedForKey', () => {
  test('depends on what is published, not on the generation, suspend, publisher or the ignored spec.owner', () => {
    const key = publishedForKey(realm(1), spec);
    expect(key).toMatch(/^u-1\/spec-[0-9a-f]{32}$/);
    expect(publishedForKey(realm(7), { ...spec, suspend: true })).toBe(key);
    expect(publishedForKey(realm(1), { ...spec, owner: 'someone' })).toBe(key);
    expect(publishedForKey(realm(1), { ...spec, publisher: '@pat:localhost' })).toBe(key);
    expect(publishedForKey(realm(1), { ...spec, revision: '2' })).not.toBe(key);
    // A number and a string that print alike are different revisions.
    expect(publishedForKey(realm(1), { ...spec, revision: 1 })).not.toBe(key);
    expect(publishedForKey(realm(1), { ...spec, sourceRealmURL: 'http://s/b/' })).not.toBe(key);
    expect(publishedForKey(realm(1), { ...spec, publishedRealmURL: 'http://p/b/' })).not.toBe(key);
  });

  test('the key of a spec without an owner is the one earlier versions wrote (no republish on upgrade)', () => {
    // Recorded by the previous version for this spec: sha256 of [source, published, ["string","1"], null].
    expect(publishedForKey(realm(1), spec)).toBe('u-1/spec-bde73f2672bc6ae24b542d14adda3716');
  });
});

describe('keys earlier versions recorded', () => {
  test('a digest that included spec.owner counts as this spec only with that owner; <uid>/<generation> only for that generation', () => {
    const withOwner = { ...spec, owner: 'alice' };
    const [ownerKey, generationKey] = legacyPublishedForKeys(realm(3), withOwner);
    expect(ownerKey).toMatch(/^u-1\/spec-[0-9a-f]{32}$/);
    expect(ownerKey).not.toBe(publishedForKey(realm(3), withOwner));
    expect(generationKey).toBe('u-1/3');
    expect(matchPublishedFor(ownerKey!, realm(3), withOwner)).toBe('legacy');
    expect(matchPublishedFor(ownerKey!, realm(3), { ...withOwner, owner: 'bob' })).toBeUndefined();
    expect(matchPublishedFor(ownerKey!, realm(3), { ...withOwner, revision: '2' })).toBeUndefined();
    expect(matchPublishedFor('u-1/3', realm(3), spec)).toBe('legacy');
    expect(matchPublishedFor('u-1/2', realm(3), spec)).toBeUndefined();
    expect(matchPublishedFor(publishedForKey(realm(3), withOwner), realm(3), withOwner)).toBe('current');
    expect(matchPublishedFor(null, realm(3), spec)).toBeUndefined();
    expect(matchPublishedFor(publishedForKey(realm(3), spec).replace('u-1', 'u-2'), realm(3), spec)).toBeUndefined();
    expect(legacyPublishedForKeys(realm(3), spec)).toEqual(['u-1/3']);
  });
});
