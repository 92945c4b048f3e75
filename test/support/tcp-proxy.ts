/**
 * A TCP proxy on 127.0.0.1 in front of one upstream (PostgreSQL), to partition one process from it
 * while that process keeps running and serving.
 *
 * `blackhole()` is a network partition, not a refusal: no byte moves in either direction any more,
 * but every socket stays open, so the process notices only through its own timeouts (a heartbeat
 * that never returns), as behind a dropped link or a failed switch. New connections are accepted and
 * held without an upstream. `heal()` lets the bytes queued on both sides flow again and connects the
 * held connections. `cut()` closes every connection at once (a reset); `close()` ends the proxy.
 */
import net from 'node:net';

interface Pair {
  client: net.Socket;
  upstream?: net.Socket;
}

export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private blackholed = false;
  /** Connections accepted while blackholed, connected upstream on heal. */
  private held: Pair[] = [];
  connections = 0;

  private constructor(
    private readonly server: net.Server,
    private readonly upstream: { host: string; port: number },
  ) {}

  static async start(upstream: { host: string; port: number }): Promise<TcpProxy> {
    const server = net.createServer();
    const proxy = new TcpProxy(server, upstream);
    server.on('connection', (client) => proxy.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get isBlackholed(): boolean {
    return this.blackholed;
  }

  private accept(client: net.Socket): void {
    this.connections += 1;
    const pair: Pair = { client };
    this.pairs.add(pair);
    client.on('error', () => this.drop(pair));
    client.on('close', () => this.drop(pair));
    if (this.blackholed) {
      client.pause();
      this.held.push(pair);
      return;
    }
    this.connect(pair);
  }

  private connect(pair: Pair): void {
    const upstream = net.connect(this.upstream.port, this.upstream.host);
    pair.upstream = upstream;
    upstream.on('error', () => this.drop(pair));
    upstream.on('close', () => this.drop(pair));
    pair.client.pipe(upstream);
    upstream.pipe(pair.client);
    if (this.blackholed) this.freeze(pair);
  }

  private freeze(pair: Pair): void {
    pair.client.unpipe();
    pair.upstream?.unpipe();
    pair.client.pause();
    pair.upstream?.pause();
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    this.held = this.held.filter((p) => p !== pair);
    pair.client.destroy();
    pair.upstream?.destroy();
  }

  /** From now on no byte moves either way; sockets stay open; new connections are held. */
  blackhole(): void {
    this.blackholed = true;
    for (const pair of this.pairs) this.freeze(pair);
  }

  /** Bytes flow again (what queued meanwhile first); held connections are connected upstream. */
  heal(): void {
    if (!this.blackholed) return;
    this.blackholed = false;
    for (const pair of this.pairs) {
      if (!pair.upstream) continue;
      pair.client.pipe(pair.upstream);
      pair.upstream.pipe(pair.client);
      pair.client.resume();
      pair.upstream.resume();
    }
    const held = this.held;
    this.held = [];
    for (const pair of held) {
      if (!this.pairs.has(pair)) continue;
      this.connect(pair);
      pair.client.resume();
    }
  }

  /** Closes every connection (a reset), keeps listening. */
  cut(): void {
    for (const pair of [...this.pairs]) this.drop(pair);
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
