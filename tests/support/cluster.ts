/**
 * @module cluster
 * Clusters for tests. Fresh bus clusters: in memory, or on the Redis at `REDIS_URL` under a
 * random key prefix whose keys are deleted afterwards; suites run once per kind, and the Redis
 * runs are ignored (and say so in their name) when `REDIS_URL` is unset. And real chat servers
 * as the nodes of one cluster: one database, one bus cluster.
 */

import { Cluster, Redis } from "ioredis";
import type { Bus } from "../../src/bus/bus.ts";
import { MemoryCluster } from "../../src/bus/memory.ts";
import { RedisBus, type RedisBusOptions } from "../../src/bus/redis/bus.ts";
import { silentLogger } from "../../src/log.ts";
import { createTestDatabase, type Seed, type TestDatabase } from "./db.ts";
import { startTestServer, type TestServer } from "./server.ts";
import { sleep } from "./wait.ts";

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
  name: "memory" | "redis" | "redis-cluster";
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

/**
 * Nodes on one Redis under a random prefix; `url` may point at a Redis the test runs, or be a
 * Redis Cluster's `host:port` seeds.
 */
export function redisCluster(
  url: string | readonly string[],
  presenceTtlS: number,
): RedisTestCluster {
  const prefix = `gbtest:${crypto.randomUUID().slice(0, 8)}:`;
  const nodes: RedisBus[] = [];
  const nodeWith = async (options: Partial<RedisBusOptions>) => {
    const bus = await RedisBus.connect({
      ...(typeof url === "string" ? { url } : { clusterNodes: url }),
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

/** Deletes every key under `prefix` (on every primary of a Redis Cluster). */
export async function deleteKeys(url: string | readonly string[], prefix: string): Promise<void> {
  const client = typeof url === "string"
    ? new Redis(url, { lazyConnect: true })
    : new Cluster(url.map((seed) => seed), { lazyConnect: true });
  try {
    await client.connect();
    const nodes = client instanceof Cluster ? client.nodes("master") : [client];
    for (const redis of nodes) {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        // One DEL per key (a cluster node refuses keys of several slots in one), pipelined.
        if (keys.length > 0) await redis.pipeline(keys.map((key) => ["del", key])).exec();
        cursor = next;
      } while (cursor !== "0");
    }
  } finally {
    await client.quit();
  }
}

/** A test on a fresh cluster of `kind`, cleaned up afterwards; ignored when the kind cannot run. */
export function clusterTest(
  kind: ClusterKind,
  name: string,
  body: (cluster: TestCluster) => Promise<void>,
  presenceTtlS?: number,
): void {
  Deno.test({
    name: kindName(name, kind),
    ignore: kind.skip !== undefined,
    async fn() {
      const cluster = kind.create(presenceTtlS);
      try {
        await body(cluster);
      } finally {
        await cluster.cleanup();
      }
    },
  });
}

export interface NodesOptions extends Seed {
  /** How many nodes (default 2). */
  nodes?: number;
  /** Environment of every node. */
  env?: Record<string, string>;
}

/**
 * Runs `body` on `options.nodes` chat servers sharing one fresh database, node `i` on the bus
 * `bus(i)` makes; then closes them and drops the database. Seeded as `options` says; by default
 * users 1..4, with 1–2 and 3–1 friends.
 */
export async function withNodes(
  bus: (index: number) => Promise<Bus>,
  options: NodesOptions,
  body: (nodes: TestServer[], db: TestDatabase) => Promise<void>,
): Promise<void> {
  const { users = [1, 2, 3, 4], friends = [[1, 2], [3, 1]], env = {} } = options;
  const db = await createTestDatabase();
  const nodes: TestServer[] = [];
  try {
    for (let i = 0; i < (options.nodes ?? 2); i++) {
      const seed = i === 0 ? { users, friends } : {};
      nodes.push(await startTestServer({ db, bus: () => bus(i), env, ...seed }));
    }
    await body(nodes, db);
  } finally {
    for (const node of nodes) await node.close();
    await db.drop();
  }
}

/** A test on nodes (`withNodes`) of a fresh `kind` cluster; ignored when the kind cannot run. */
export function nodesTest(
  kind: ClusterKind,
  name: string,
  options: NodesOptions & {
    /** The cluster's presence TTL (Redis; default 2 s). */
    presenceTtlS?: number;
    /** Wraps each node's bus (e.g. to slow one of its calls down). */
    wrapBus?: (bus: Bus) => Bus;
  },
  body: (nodes: TestServer[], db: TestDatabase, cluster: TestCluster) => Promise<void>,
): void {
  const wrap = options.wrapBus ?? ((bus: Bus) => bus);
  clusterTest(
    kind,
    name,
    (cluster) =>
      withNodes(
        async () => wrap(await cluster.node()),
        options,
        (nodes, db) => body(nodes, db, cluster),
      ),
    options.presenceTtlS ?? 2,
  );
}

/** `bus` with `subscribe` confirmed only after `ms` (a loaded or distant broker). */
export function slowSubscribe(bus: Bus, ms: number): Bus {
  return new Proxy(bus, {
    get(target, prop) {
      if (prop === "subscribe") {
        return async (userId: number) => {
          await sleep(ms);
          await target.subscribe(userId);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
