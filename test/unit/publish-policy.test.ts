import { checkOwnSpacePath, checkPublishedRealmDomain, hostUnderDomain, matrixLocalpart, notPublishable, notRealmOwner, realmNameOf } from '../../src/wire/publish-policy.js';

describe('published-realm domain rule', () => {
  test.each([
    ['https://boxel.site/', 'boxel.site'],
    ['https://mike.boxel.site/', 'boxel.site'],
    ['https://a.b.boxel.site/x/', 'boxel.site'],
    ['https://MIKE.Boxel.Site/', 'boxel.site'],
    ['https://mike.boxel.site./', 'boxel.site'],
    ['http://pub.localhost:4205/r/', 'localhost:4205'],
    ['http://pub.localhost:4205/r/', 'localhost'],
  ])('%s is under %s', (url, domain) => {
    expect(hostUnderDomain(new URL(url), domain)).toBe(true);
    expect(checkPublishedRealmDomain(url, [domain])).toBeUndefined();
  });

  // Boxel's plain endsWith lets each of these pass; the dot boundary refuses them.
  test.each([
    ['https://evilboxel.site/', 'boxel.site'],
    ['https://mike.evilboxel.site/', 'boxel.site'],
    ['https://boxel.site.evil.com/', 'boxel.site'],
    ['http://pub.localhost:4206/r/', 'localhost:4205'],
    ['http://evillocalhost:4205/r/', 'localhost:4205'],
  ])('%s is not under %s', (url, domain) => {
    expect(hostUnderDomain(new URL(url), domain)).toBe(false);
    expect(checkPublishedRealmDomain(url, [domain])).toEqual({
      rule: 'published-realm-domain',
      message: `publishedRealmURL ${url} is not under a published-realm domain (${domain}); use a host that is one of them or ends with "." and one of them, or add its domain to --published-realm-domains`,
    });
  });

  test('passes when under any of several domains; no domains configured means the rule is off', () => {
    expect(checkPublishedRealmDomain('https://a.boxel.space/r/', ['boxel.site', ' Boxel.Space '])).toBeUndefined();
    expect(checkPublishedRealmDomain('https://anything.example/', [])).toBeUndefined();
    expect(checkPublishedRealmDomain('https://anything.example/', ['', ' '])).toBeUndefined();
  });
});

describe('own-space path rule', () => {
  const base = { sourceRealmURL: 'https://app.boxel.ai/mike/Game-Mechanics/', publisher: '@mike:boxel.ai', spaceDomain: 'boxel.space', unlistedSlug: null };

  test('on the publisher own space, the realm name (lowercased) passes and any other path is refused with the allowed URLs', () => {
    expect(checkOwnSpacePath({ ...base, publishedRealmURL: 'https://mike.boxel.space/game-mechanics/' })).toBeUndefined();
    expect(checkOwnSpacePath({ ...base, publishedRealmURL: 'https://mike.boxel.space/chosen/' })).toEqual({
      rule: 'own-space-path',
      message:
        "publishedRealmURL https://mike.boxel.space/chosen/ is on @mike:boxel.ai's own space mike.boxel.space, where the path must be the source realm's name " +
        "or its server-issued unlisted link; use https://mike.boxel.space/game-mechanics/",
    });
    expect(checkOwnSpacePath({ ...base, publishedRealmURL: 'https://mike.boxel.space/' })?.rule).toBe('own-space-path');
    expect(checkOwnSpacePath({ ...base, publishedRealmURL: 'https://mike.boxel.space/a/game-mechanics/' })?.rule).toBe('own-space-path');
  });

  test('the unlisted slug passes when there is one', () => {
    const withSlug = { ...base, unlistedSlug: 'x7f3k9' };
    expect(checkOwnSpacePath({ ...withSlug, publishedRealmURL: 'https://mike.boxel.space/x7f3k9/' })).toBeUndefined();
    expect(checkOwnSpacePath({ ...base, publishedRealmURL: 'https://mike.boxel.space/x7f3k9/' })?.rule).toBe('own-space-path');
    expect(checkOwnSpacePath({ ...withSlug, publishedRealmURL: 'https://mike.boxel.space/other/' })?.message).toContain('use https://mike.boxel.space/game-mechanics/ or https://mike.boxel.space/x7f3k9/');
  });

  test('other hosts, and no space domain, are not restricted', () => {
    expect(checkOwnSpacePath({ ...base, publishedRealmURL: 'https://anna.boxel.space/anything/' })).toBeUndefined();
    expect(checkOwnSpacePath({ ...base, publishedRealmURL: 'https://mike.boxel.site/anything/' })).toBeUndefined();
    expect(checkOwnSpacePath({ ...base, spaceDomain: undefined, publishedRealmURL: 'https://mike.boxel.space/anything/' })).toBeUndefined();
  });

  test('a space domain with a port compares host and port', () => {
    const local = { ...base, spaceDomain: 'localhost:4201' };
    expect(checkOwnSpacePath({ ...local, publishedRealmURL: 'http://mike.localhost:4201/other/' })?.rule).toBe('own-space-path');
    expect(checkOwnSpacePath({ ...local, publishedRealmURL: 'http://mike.localhost:4202/other/' })).toBeUndefined();
  });
});

describe('helpers and messages', () => {
  test('localpart and realm name as Boxel derives them', () => {
    expect(matrixLocalpart('@mike:boxel.ai')).toBe('mike');
    expect(matrixLocalpart('@realm/_published_1:localhost:8008')).toBe('realm/_published_1');
    expect(realmNameOf('https://h/mike/My-Realm/')).toBe('my-realm');
  });

  test('refusals name the rule and the fix', () => {
    expect(notRealmOwner('@eve:localhost', 'http://h/owner/r/', 'unpublish')).toEqual({
      rule: 'realm-owner',
      message:
        '@eve:localhost does not hold realm-owner on the source realm http://h/owner/r/, so may not unpublish it; ' +
        'set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel',
    });
    expect(notPublishable('http://h/owner/r/').rule).toBe('publishable');
    expect(notPublishable('http://h/owner/r/').message).toContain('mark it publishable in Boxel');
  });
});
