import { isWithin, pathSegmentProblem, publishedDiskIdProblem, sourceDiskIdProblem, versionNameProblem } from '../../src/dataplane/safe-paths.js';
import { RealmsLayout } from '../../src/dataplane/layout.js';

describe('path components read from the database', () => {
  test.each([
    ['', 'has an empty path segment'],
    ['.', 'has a "." path segment'],
    ['..', 'has a ".." path segment'],
    ['a/b', 'contains "/"'],
    ['a\\b', 'contains a backslash'],
    ['a\u0000b', 'contains a NUL or control character'],
    ['a\nb', 'contains a NUL or control character'],
    ['x'.repeat(256), 'has a path segment longer than 255 bytes'],
  ])('segment %j is refused: %s', (segment, problem) => {
    expect(pathSegmentProblem(segment)).toBe(problem);
  });

  test.each(['realm', '-leading-dash', '.hidden', 'a..b', 'ünïcode', 'x'.repeat(255)])('segment %j is accepted', (segment) => {
    expect(pathSegmentProblem(segment)).toBeUndefined();
  });

  test.each([
    ['../../etc', 'has a ".." path segment'],
    ['owner/../../etc', 'has a ".." path segment'],
    ['/etc', 'is an absolute path'],
    ['owner/', 'has an empty path segment'],
    ['_published/6b1c5a0e', 'is inside _published/, where published realms live'],
    ['', 'is empty'],
  ])('source disk_id %j is refused: %s', (diskId, problem) => {
    expect(sourceDiskIdProblem(diskId)).toBe(problem);
  });

  test.each(['alice/blog', 'realm/_published_x/y', 'single', 'a-b/c.d'])('source disk_id %j is accepted', (diskId) => {
    expect(sourceDiskIdProblem(diskId)).toBeUndefined();
  });

  test('published disk ids are one segment; version names are only the ones the operator creates', () => {
    expect(publishedDiskIdProblem('6b1c5a0e-0000-4000-8000-000000000001')).toBeUndefined();
    for (const bad of ['..', '../../etc', 'a/b', '', '.x', '-x']) expect(publishedDiskIdProblem(bad)).toMatch(/^is not a single path segment/);
    expect(versionNameProblem('v1764100000000-0a1b2c3d')).toBeUndefined();
    expect(versionNameProblem('adopted-1764100000000')).toBeUndefined();
    for (const bad of ['../../../../etc', '/etc', '..', 'v1-XYZ', 'v1764100000000-0a1b2c3d/..', 'adopted-']) {
      expect(versionNameProblem(bad)).toBe('is not a content version name the operator creates (v<ms>-<hex8> or adopted-<ms>)');
    }
  });

  test('the layout refuses bad components instead of building a path from them', () => {
    const layout = new RealmsLayout('/realms');
    expect(layout.sourceDir('alice/blog')).toBe('/realms/alice/blog');
    expect(() => layout.sourceDir('../../etc')).toThrow('source realm disk_id "../../etc" has a ".." path segment; it must name a directory under the realms root /realms');
    expect(() => layout.versionDir('6b1c5a0e', '../../../../etc')).toThrow(/content version "..\/..\/..\/..\/etc" is not a content version name/);
    expect(() => layout.publishedDir('..')).toThrow(/published disk_id ".." is not a single path segment/);
    expect(layout.versionFromLinkTarget('d', '.realm-operator/versions/d/..')).toBeUndefined();
    expect(layout.versionFromLinkTarget('d', '.realm-operator/versions/d/v1764100000000-0a1b2c3d')).toBe('v1764100000000-0a1b2c3d');
  });

  test('containment compares whole path segments', () => {
    expect(isWithin('/r/a', '/r')).toBe(true);
    expect(isWithin('/r', '/r')).toBe(true);
    expect(isWithin('/r', '/r', false)).toBe(false);
    expect(isWithin('/rx/a', '/r')).toBe(false);
    expect(isWithin('/r/../etc', '/r')).toBe(false);
    expect(isWithin('/r/..a', '/r')).toBe(true);
  });
});
