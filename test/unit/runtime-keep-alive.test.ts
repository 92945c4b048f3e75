import http from 'node:http';
import https from 'node:https';
import { describe, expect, test } from '@jest/globals';
import { KeepAliveConnection } from '../../src/runtime/keep-alive.js';
import type { KubeConnection } from '../../src/runtime/kube-client.js';

/** A connection that hands out one cached agent, as client-node's KubeConfig does. */
function connectionWith(agent: http.Agent | undefined): KubeConnection {
  return {
    getCurrentCluster: () => ({ server: 'https://api.example:6443' }),
    async applyToHTTPSOptions(options) {
      options.ca = 'CA';
      options.headers = { authorization: 'Bearer t' };
      if (agent) options.agent = agent;
    },
  };
}

async function agentOf(connection: KubeConnection): Promise<https.RequestOptions> {
  const options: https.RequestOptions = {};
  await connection.applyToHTTPSOptions(options);
  return options;
}

describe('KeepAliveConnection', () => {
  test('replaces an agent without keep-alive by one keep-alive agent with the same TLS options, reused for every request', async () => {
    const inner = new https.Agent({ ca: 'CA', servername: 'api.internal' });
    const connection = new KeepAliveConnection(connectionWith(inner), 8);
    const first = await agentOf(connection);
    const second = await agentOf(connection);
    const agent = first.agent as https.Agent & { keepAlive: boolean; options: https.AgentOptions };
    expect(agent).not.toBe(inner);
    expect(agent).toBeInstanceOf(https.Agent);
    expect(agent.keepAlive).toBe(true);
    expect(agent.maxSockets).toBe(8);
    expect(agent.options.ca).toBe('CA');
    expect(agent.options.servername).toBe('api.internal');
    expect(second.agent).toBe(agent);
    // Everything else the inner connection set is kept.
    expect(first.headers).toEqual({ authorization: 'Bearer t' });
    expect(first.ca).toBe('CA');
    connection.destroy();
  });

  test('leaves keep-alive agents, proxy agents and no agent as they are', async () => {
    const keepAlive = new https.Agent({ keepAlive: true });
    expect((await agentOf(new KeepAliveConnection(connectionWith(keepAlive)))).agent).toBe(keepAlive);
    class ProxyAgent extends https.Agent {}
    const proxy = new ProxyAgent();
    expect((await agentOf(new KeepAliveConnection(connectionWith(proxy)))).agent).toBe(proxy);
    expect((await agentOf(new KeepAliveConnection(connectionWith(undefined)))).agent).toBeUndefined();
  });

  test('http agents (plain-HTTP API servers) get a keep-alive http agent', async () => {
    const plain = new http.Agent();
    const agent = (await agentOf(new KeepAliveConnection(connectionWith(plain)))).agent as http.Agent & { keepAlive: boolean };
    expect(agent).not.toBe(plain);
    expect(agent).not.toBeInstanceOf(https.Agent);
    expect(agent.keepAlive).toBe(true);
  });
});
