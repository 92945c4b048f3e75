/**
 * One reader per replica process: loops over every file of the published realm, one request in
 * flight at a time, over a keep-alive connection, and hands each read to the checker. Bounded: a
 * request times out after `requestTimeoutMs`, reads are paced by `pauseMs`, and the loop ends on
 * `stop()`. After a transport error it backs off briefly (the replica may be down).
 */
import http from 'node:http';
import { checkBody } from './content.js';
import { now, type ConsistencyChecker, type ReadRecord } from './checker.js';

export interface ReaderOptions {
  replicaId: string;
  port: number;
  /** Host header, e.g. `pub.localhost`. */
  host: string;
  /** URL path of the realm root, e.g. `/consistency-a/` (ends with `/`). */
  realmPath: string;
  files: readonly string[];
  checker: ConsistencyChecker;
  /** Pause between reads, ms (keeps 3–5 readers from starving the 2-core machine). Default 1. */
  pauseMs?: number;
  requestTimeoutMs?: number;
}

export class Reader {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  reads = 0;

  constructor(private readonly options: ReaderOptions) {}

  get replicaId(): string {
    return this.options.replicaId;
  }

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.agent.destroy();
  }

  private async run(): Promise<void> {
    const { files, pauseMs = 1 } = this.options;
    let index = Math.floor(Math.random() * files.length);
    while (!this.stopped) {
      const file = files[index++ % files.length]!;
      const read = await this.readOnce(file);
      this.reads += 1;
      this.options.checker.record(read);
      if (this.stopped) break;
      await sleep(read.status === undefined ? 50 : pauseMs);
    }
  }

  private readOnce(file: string): Promise<ReadRecord> {
    const { replicaId, port, host, realmPath, requestTimeoutMs = 5000 } = this.options;
    const start = now();
    return new Promise<ReadRecord>((resolve) => {
      let settled = false;
      const done = (fields: Partial<ReadRecord>) => {
        if (settled) return;
        settled = true;
        resolve({ replica: replicaId, file, start, end: now(), ...fields });
      };
      const req = http.request(
        { host: '127.0.0.1', port, method: 'GET', path: `${realmPath}${file}`, headers: { host }, agent: this.agent, timeout: requestTimeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', (error) => done({ error: `response: ${error.message}` }));
          res.on('aborted', () => done({ error: 'response aborted' }));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const headers = {
              cache: header(res.headers['x-cache']),
              realm: header(res.headers['x-realm-url']),
              epoch: header(res.headers['x-realm-epoch']),
              servedBy: header(res.headers['x-replica-id']),
            };
            const body = Buffer.concat(chunks).toString('utf8');
            if (status !== 200) return done({ status, ...headers, error: body.slice(0, 200) });
            const checked = checkBody(file, body);
            if (checked.kind === 'ok') return done({ status, ...headers, revision: checked.revision });
            done({ status, ...headers, corrupt: checked.reason });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${requestTimeoutMs} ms`)));
      req.on('error', (error: NodeJS.ErrnoException) => done({ error: error.code ?? error.message }));
      req.end();
    });
  }
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
