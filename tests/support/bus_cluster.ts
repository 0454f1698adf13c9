/**
 * @module bus_cluster
 * Fresh bus clusters for tests: in memory, or on the Redis at `REDIS_URL` under a random key
 * prefix whose keys are deleted afterwards. Suites run once per kind; the Redis runs are
 * ignored (and say so in their name) when `REDIS_URL` is unset.
 */

import { Redis } from "ioredis";
import type { Bus } from "../../src/bus/bus.ts";
import { MemoryCluster } from "../../src/bus/memory.ts";
import { RedisBus, type RedisBusOptions } from "../../src/bus/redis/bus.ts";
import { silentLogger } from "../../src/log.ts";

export const REDIS_URL = Deno.env.get("REDIS_URL") || undefined;

/** A bus node that can also die without leaving. */
export type TestBus = Bus & { abandon(): void };

export interface TestCluster {
  /** Longest time a dead node's users may take to be reported offline. */
  readonly deadNodeBoundMs: number;
  /** The key prefix in use (Redis only). */
  readonly prefix: string | undefined;
  /** A bus for one more node of this cluster. */
  node(): Promise<TestBus>;
  /** Closes the nodes still open and deletes the cluster's keys. */
  cleanup(): Promise<void>;
}

export interface ClusterKind {
  name: "memory" | "redis";
  /** Set when the kind cannot run here; the test is then ignored. */
  skip: string | undefined;
  /** A fresh cluster; `presenceTtlS` matters to Redis only. */
  create(presenceTtlS?: number): TestCluster;
}

export const CLUSTER_KINDS: ClusterKind[] = [
  { name: "memory", skip: undefined, create: () => memoryCluster() },
  {
    name: "redis",
    skip: REDIS_URL === undefined ? "skipped: REDIS_URL unset" : undefined,
    create: (ttl = 1) => redisCluster(REDIS_URL!, ttl),
  },
];

/** The test name for `kind`, saying when it is skipped. */
export function kindName(name: string, kind: ClusterKind): string {
  return `${name} (${kind.name}${kind.skip === undefined ? "" : `, ${kind.skip}`})`;
}

function memoryCluster(): TestCluster {
  const cluster = new MemoryCluster();
  const nodes: TestBus[] = [];
  return {
    deadNodeBoundMs: 0,
    prefix: undefined,
    node() {
      const bus = cluster.node();
      nodes.push(bus);
      return Promise.resolve(bus);
    },
    async cleanup() {
      for (const bus of nodes) await bus.close();
    },
  };
}

/** A Redis cluster whose nodes can be given their own options (another URL, a logger). */
export interface RedisTestCluster extends TestCluster {
  nodeWith(options: Partial<RedisBusOptions>): Promise<RedisBus>;
}

/** Nodes on one Redis under a random prefix; `url` may point at a Redis the test runs. */
export function redisCluster(url: string, presenceTtlS: number): RedisTestCluster {
  const prefix = `gbtest:${crypto.randomUUID().slice(0, 8)}:`;
  const nodes: RedisBus[] = [];
  const nodeWith = async (options: Partial<RedisBusOptions>) => {
    const bus = await RedisBus.connect({
      url,
      keyPrefix: prefix,
      presenceTtlS,
      logger: silentLogger,
      ...options,
    });
    nodes.push(bus);
    return bus;
  };
  return {
    deadNodeBoundMs: presenceTtlS * 1000 * 4 / 3,
    prefix,
    nodeWith,
    node: () => nodeWith({}),
    async cleanup() {
      for (const bus of nodes) await bus.close();
      await deleteKeys(url, prefix);
    },
  };
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    await redis.quit();
  }
}

/** Resolves once `check` returns true; rejects after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
