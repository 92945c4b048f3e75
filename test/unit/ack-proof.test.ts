import { completionOf, parseAckNotification, type CompletionProof } from '../../src/dataplane/ack-waiter.js';

const realm = 'http://pub.localhost/r/';

describe('parseAckNotification', () => {
  test('a completion announcement with its proof', () => {
    const payload = JSON.stringify({ r: realm, e: 7, id: 'b', c: { a: ['a', 'b'], o: [['c', 1500.25, false]], w: 60000 } });
    expect(parseAckNotification(payload)).toEqual({
      realmURL: realm,
      epoch: 7,
      replicaId: 'b',
      proof: { acknowledged: ['a', 'b'], others: [{ replicaId: 'c', lapsedMs: 1500.25, done: false }], windowMs: 60000 },
    });
  });

  test('a malformed proof is dropped, the notifier kept (the waiter then reads)', () => {
    for (const c of [null, 'x', { a: 'a', o: [], w: 1 }, { a: [1], o: [], w: 1 }, { a: [], o: [['c', 'soon', false]], w: 1 }, { a: [], o: [['c', 1]], w: 1 }, { a: [], o: [], w: -1 }]) {
      expect(parseAckNotification(JSON.stringify({ r: realm, e: 7, id: 'b', c }))).toEqual({ realmURL: realm, epoch: 7, replicaId: 'b' });
    }
  });

  test('anything but a JSON ack is not an ack', () => {
    expect(parseAckNotification('*')).toBeUndefined();
    expect(parseAckNotification(realm)).toBeUndefined();
    expect(parseAckNotification('{"r":1}')).toBeUndefined();
    expect(parseAckNotification('{not json')).toBeUndefined();
    expect(parseAckNotification(JSON.stringify({ r: realm, e: 1.5, id: 'b' }))).toBeUndefined();
  });
});

describe('completionOf: a proof judged with the waiter’s lease grace, as its status read would', () => {
  const proof: CompletionProof = {
    acknowledged: ['live-done'],
    others: [
      { replicaId: 'lapsed-1s-missing', lapsedMs: 1000, done: false },
      { replicaId: 'lapsed-3s-done', lapsedMs: 3000, done: true },
      { replicaId: 'running-missing', lapsedMs: -500, done: false },
    ],
    windowMs: 60_000,
  };

  test('replicas lapsed less than the grace ago count (done or missing); older lapses do not', () => {
    expect(completionOf(realm, 7, proof, 2000)).toEqual({
      realmURL: realm,
      epoch: 7,
      acknowledged: ['live-done'],
      missing: ['lapsed-1s-missing', 'running-missing'],
      mode: 'acknowledged',
    });
    expect(completionOf(realm, 7, proof, 5000)?.acknowledged).toEqual(['lapsed-3s-done', 'live-done']);
  });

  test('a lapse exactly at the grace counts as live (at worst one spare read)', () => {
    const edge: CompletionProof = { acknowledged: [], others: [{ replicaId: 'edge', lapsedMs: 2000, done: false }], windowMs: 60_000 };
    expect(completionOf(realm, 7, edge, 2000)?.missing).toEqual(['edge']);
    expect(completionOf(realm, 7, edge, 1999.999)?.missing).toEqual([]);
  });

  test('complete with no replica left: notify-only, as the read says', () => {
    const gone: CompletionProof = { acknowledged: [], others: [{ replicaId: 'old', lapsedMs: 10_000, done: false }], windowMs: 60_000 };
    expect(completionOf(realm, 7, gone, 2000)).toMatchObject({ acknowledged: [], missing: [], mode: 'notify-only' });
  });

  test('a grace longer than the window the proof lists lapses for: no verdict (the waiter reads)', () => {
    expect(completionOf(realm, 7, proof, 60_001)).toBeUndefined();
    expect(completionOf(realm, 7, proof, 60_000)).toBeDefined();
  });
});
