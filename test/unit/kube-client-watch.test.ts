/**
 * kubeWatch's line framing: events split across chunks, many events in one chunk, blank lines,
 * and a malformed line ending the watch with an error — over a local HTTP server that writes the
 * stream in the chunks the test chooses.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, test } from '@jest/globals';
import { kubeWatch, type KubeConnection } from '../../src/runtime/kube-client.js';

let server: http.Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** Serves one watch response written as `chunks`, one write each, a moment apart. */
async function serve(chunks: string[]): Promise<KubeConnection> {
  server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    void (async () => {
      for (const chunk of chunks) {
        res.write(chunk);
        await new Promise((r) => setImmediate(r));
      }
      res.end();
    })();
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { getCurrentCluster: () => ({ server: `http://127.0.0.1:${port}` }), applyToHTTPSOptions: async () => undefined };
}

function watchAll(connection: KubeConnection): Promise<{ events: Array<[string, unknown]>; error: unknown }> {
  const events: Array<[string, unknown]> = [];
  return new Promise((resolve) => {
    void kubeWatch(connection).watch('/api/v1/configmaps', {}, (type, object) => events.push([type, object]), (error) => resolve({ events, error }));
  });
}

const line = (type: string, name: string) => `${JSON.stringify({ type, object: { metadata: { name } } })}\n`;

test('events split across chunks and many in one chunk arrive whole and in order', async () => {
  const stream = line('ADDED', 'a') + line('MODIFIED', 'a') + '\n' + line('ADDED', 'b') + line('DELETED', 'a') + line('ADDED', 'c');
  // Cut mid-line, at a newline, and leave several whole events in one chunk.
  const cuts = [5, 40, stream.indexOf('\n') + 1 + 3, stream.length - 10];
  const chunks = [0, ...cuts].map((from, i) => stream.slice(from, [...cuts, stream.length][i]));
  const { events, error } = await watchAll(await serve(chunks));
  expect(error).toBeNull();
  expect(events).toEqual([
    ['ADDED', { metadata: { name: 'a' } }],
    ['MODIFIED', { metadata: { name: 'a' } }],
    ['ADDED', { metadata: { name: 'b' } }],
    ['DELETED', { metadata: { name: 'a' } }],
    ['ADDED', { metadata: { name: 'c' } }],
  ]);
});

test('a malformed line ends the watch with an error naming it; events before it were delivered', async () => {
  const { events, error } = await watchAll(await serve([line('ADDED', 'a') + '{"type":', 'oops\n', line('ADDED', 'b')]));
  expect(events).toEqual([['ADDED', { metadata: { name: 'a' } }]]);
  expect((error as Error).message).toContain('malformed watch event: {"type":oops');
});
