/**
 * Connection reuse for a {@link KubeConnection} that hands out agents without keep-alive.
 *
 * Why: client-node's `KubeConfig.applyToHTTPSOptions` sets a cached `https.Agent` created without
 * `keepAlive`, so every request through it opens a new TCP + TLS connection (and its typed APIs
 * build a new undici dispatcher per call, which is worse). A profile of 1,000 PublishedRealms
 * reconciling spent more CPU in TLS handshakes and `SecureContext` set-up than in anything else
 * (bench/scale.ts with SCALE_CPU_PROF). client-go keeps one pool of connections per cluster; so
 * does this: the first agent the connection hands out is replaced by one keep-alive agent with
 * the same TLS options, reused for every later request. Proxy agents (any non-`http(s).Agent`)
 * are left as they are.
 */
import type { Agent } from 'node:http';
import type { AgentOptions, RequestOptions } from 'node:https';
import type { KubeConnection } from './kube-client.js';
import { http, https } from './node-http.js';

/** How many sockets a keep-alive agent keeps open to the API server; requests beyond wait for one. */
export const DEFAULT_MAX_SOCKETS = 64;

export class KeepAliveConnection implements KubeConnection {
  private readonly agents = new WeakMap<Agent, Agent>();
  private readonly owned = new Set<Agent>();

  constructor(
    private readonly inner: KubeConnection,
    private readonly maxSockets = DEFAULT_MAX_SOCKETS,
  ) {}

  getCurrentCluster(): { server: string } | null {
    return this.inner.getCurrentCluster();
  }

  async applyToHTTPSOptions(options: RequestOptions): Promise<void> {
    await this.inner.applyToHTTPSOptions(options);
    const agent = options.agent;
    if (!agent || !isPlainAgent(agent) || agent.keepAlive) return;
    let pooled = this.agents.get(agent);
    if (!pooled) {
      const settings = { ...agent.options, keepAlive: true, maxSockets: this.maxSockets, scheduling: 'lifo' as const };
      pooled = agent instanceof https.Agent ? new https.Agent(settings) : new http.Agent(settings);
      this.agents.set(agent, pooled);
      this.owned.add(pooled);
    }
    options.agent = pooled;
  }

  /** Closes the idle keep-alive sockets (at shutdown). */
  destroy(): void {
    for (const agent of this.owned) agent.destroy();
    this.owned.clear();
  }
}

function isPlainAgent(agent: unknown): agent is Agent & { keepAlive?: boolean; options: AgentOptions } {
  return (agent instanceof https.Agent || agent instanceof http.Agent) && (agent.constructor === https.Agent || agent.constructor === http.Agent);
}
