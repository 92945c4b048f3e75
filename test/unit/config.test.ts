import { z } from 'zod';
import { ConfigError, databaseURLSchema, parseSettings } from '../../src/cli/config.js';

describe('command-line settings', () => {
  const schema = z.object({ databaseURL: databaseURLSchema });
  const names = { databaseURL: { flag: '--database-url', env: 'DATABASE_URL' } };

  test('accepts a postgres URL', () => {
    expect(parseSettings(schema, { databaseURL: 'postgres://u:p@127.0.0.1:5432/db' }, names)).toEqual({ databaseURL: 'postgres://u:p@127.0.0.1:5432/db' });
  });

  test.each([
    [undefined, '--database-url / DATABASE_URL: is required'],
    ['mysql://h/db', '--database-url / DATABASE_URL: must be a postgres:// or postgresql:// connection string'],
    ['not a url', '--database-url / DATABASE_URL: must be a postgres:// or postgresql:// connection string'],
  ])('%j is refused, naming the flag and the variable', (value, message) => {
    const error = (() => {
      try {
        parseSettings(schema, { databaseURL: value }, names);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([message]);
  });
});
