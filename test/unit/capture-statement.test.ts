/**
 * captureStatement: the one statement a function sends, taken without sending it, for sending it
 * with the realm lock; anything else (none, two, a value that is not text) is left to be run as
 * before, so a change in the function it captures can cost a round trip but never a statement.
 */
import { captureStatement, queryPrepared, type Queryable } from '../../src/dataplane/db.js';

describe('captureStatement', () => {
  test('one statement with text and NULL values is captured, through queryPrepared too', async () => {
    await expect(captureStatement((db) => db.query('SELECT $1::text, $2::text', ['a', null]))).resolves.toEqual({ text: 'SELECT $1::text, $2::text', values: ['a', null] });
    await expect(captureStatement((db) => queryPrepared(db, 'SELECT $1::text', ['b']))).resolves.toEqual({ text: 'SELECT $1::text', values: ['b'] });
  });

  test('no statement, two, or a value that is not text or NULL: nothing captured', async () => {
    await expect(captureStatement(async () => undefined)).resolves.toBeUndefined();
    await expect(
      captureStatement(async (db: Queryable) => {
        await db.query('SELECT 1');
        await db.query('SELECT 2');
      }),
    ).resolves.toBeUndefined();
    await expect(captureStatement((db) => db.query('SELECT $1::int', [1]))).resolves.toBeUndefined();
    await expect(captureStatement((db) => db.query('SELECT $1::text[]', [['a']]))).resolves.toBeUndefined();
  });
});
