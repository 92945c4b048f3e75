import {
  matchingDomainOverride,
  overrideAllowsPublisher,
  overrideNeedsWrite,
  parseDomainOverrides,
  parseOverrideHost,
  checkOwnSpacePath, checkPublishedRealmDomain, hostUnderDomain, matrixLocalpart,
  notPublishable,
  notRealmOwner,
  realmNameOf,
} from '../../src/wire/publish-policy.js';

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

// Boxel: packages/runtime-common/constants.ts parsePublishedRealmDomainOverrides and
// packages/realm-server/handlers/handle-publish-realm.ts parseOverrideHost / maybeApplyPublishedRealmOverride.
describe('PUBLISHED_REALM_DOMAIN_OVERRIDES', () => {
  const source = 'https://app.boxel.ai/mike/site/';

  test('an override host is parsed as Boxel does: a URL when it has "://", else https://<it>; lower-cased', () => {
    expect(parseOverrideHost('WWW.Mikes.Example')).toEqual({ host: 'www.mikes.example', hostname: 'www.mikes.example', port: '' });
    expect(parseOverrideHost('sites.example:4443')).toEqual({ host: 'sites.example:4443', hostname: 'sites.example', port: '4443' });
    expect(parseOverrideHost('http://sites.example:8080/ignored')).toEqual({ host: 'sites.example:8080', hostname: 'sites.example', port: '8080' });
    // https:// default port is dropped by URL, as in Boxel.
    expect(parseOverrideHost('sites.example:443')).toEqual({ host: 'sites.example', hostname: 'sites.example', port: '' });
    expect(parseOverrideHost('not a host')).toBeUndefined();
  });

  test('parsing: an empty value is no overrides; keys are canonical realm URLs', () => {
    expect(parseDomainOverrides('')).toEqual({ ok: true, overrides: {} });
    expect(parseDomainOverrides('{}')).toEqual({ ok: true, overrides: {} });
    expect(parseDomainOverrides('{"https://APP.boxel.ai./%6Dike/site/":"www.mikes.example"}')).toEqual({ ok: true, overrides: { [source]: 'www.mikes.example' } });
    const refused = parseDomainOverrides('{"https://app.boxel.ai/a":"x.example","https://app.boxel.ai/b/":["x"],"nope":"x.example"}');
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.problems).toHaveLength(3);
  });

  test('applies only on the override host of that source: host name alone when the override has no port, host and port when it has', () => {
    const overrides = { [source]: 'www.mikes.example', 'http://localhost:4201/a/b/': 'sites.example:4443' };
    expect(matchingDomainOverride(overrides, source, 'https://www.mikes.example/')).toBe('www.mikes.example');
    expect(matchingDomainOverride(overrides, source, 'https://WWW.mikes.example./blog/')).toBe('www.mikes.example');
    expect(matchingDomainOverride(overrides, source, 'http://www.mikes.example:8080/')).toBe('www.mikes.example');
    // Exact host: neither a subdomain nor a look-alike suffix.
    expect(matchingDomainOverride(overrides, source, 'https://x.www.mikes.example/')).toBeUndefined();
    expect(matchingDomainOverride(overrides, source, 'https://evilwww.mikes.example/')).toBeUndefined();
    expect(matchingDomainOverride(overrides, 'http://localhost:4201/a/b/', 'https://sites.example:4443/')).toBe('sites.example:4443');
    expect(matchingDomainOverride(overrides, 'http://localhost:4201/a/b/', 'https://sites.example:4444/')).toBeUndefined();
    // Another source realm gets nothing from this source's override.
    expect(matchingDomainOverride(overrides, 'https://app.boxel.ai/eve/site/', 'https://www.mikes.example/')).toBeUndefined();
    expect(matchingDomainOverride({}, source, 'https://www.mikes.example/')).toBeUndefined();
  });

  test("the publisher needs write on the source through its own, 'users' or '*' row (Boxel's effective permissions)", () => {
    const publisher = '@mike:boxel.ai';
    expect(overrideAllowsPublisher([{ username: publisher, write: true }], publisher)).toBe(true);
    expect(overrideAllowsPublisher([{ username: 'users', write: true }], publisher)).toBe(true);
    expect(overrideAllowsPublisher([{ username: '*', write: true }], publisher)).toBe(true);
    expect(overrideAllowsPublisher([{ username: publisher, write: false }, { username: '@other:boxel.ai', write: true }], publisher)).toBe(false);
    expect(overrideAllowsPublisher([], publisher)).toBe(false);
    expect(overrideNeedsWrite(publisher, source, 'https://www.mikes.example/', 'www.mikes.example')).toEqual({
      rule: 'published-realm-domain',
      message:
        `publishedRealmURL https://www.mikes.example/ is on www.mikes.example, the PUBLISHED_REALM_DOMAIN_OVERRIDES host of ${source}, which only a publisher with write on that source may use, ` +
        `and ${publisher} has none; grant ${publisher} write on ${source} in Boxel, or use a host under a published-realm domain`,
    });
  });
});
