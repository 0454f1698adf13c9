/**
 * @module redis_cluster
 * A real local Redis Cluster for tests: 3 primaries and 3 replicas of `redis-server` on free
 * 127.0.0.1 ports, in a temp dir of their own, created with `redis-cli --cluster create` and
 * ready once every node says `cluster_state:ok`. Plus the drills a test runs on it: kill -9
 * of a primary (and its restart as a replica), `CLUSTER FAILOVER`, a slot migration, a primary
 * frozen with SIGSTOP. One cluster serves a whole test file (`sharedRedisCluster`); every drill
 * leaves it with 3 primaries, each with a replica, all slots served.
 */

import { Redis } from "ioredis";
import { HASH_SLOTS, hashSlot } from "../../src/bus/redis/keys.ts";
import { type ClusterKind, redisCluster } from "./cluster.ts";

export interface RedisClusterOptions {
  /** `cluster-node-timeout`: how long a primary may be silent before a replica takes over. */
  nodeTimeoutMs?: number;
}

/** One `redis-server` of the cluster. */
export interface ClusterNodeProcess {
  port: number;
  busPort: number;
  process: Deno.ChildProcess | undefined;
}

/** Whether `redis-server` and `redis-cli` can be run here. */
export function redisClusterSkip(): string | undefined {
  try {
    const out = new Deno.Command("redis-server", { args: ["--version"], stdout: "piped" })
      .outputSync();
    const version = /v=(\d+)\./.exec(new TextDecoder().decode(out.stdout))?.[1];
    if (Number(version) < 7) return "skipped: redis-server is older than 7 (no sharded pub/sub)";
    return undefined;
  } catch {
    return "skipped: no redis-server to start a Redis Cluster";
  }
}

export class LocalRedisCluster {
  readonly dir: string;
  readonly nodes: ClusterNodeProcess[];
  readonly nodeTimeoutMs: number;

  private constructor(dir: string, nodes: ClusterNodeProcess[], nodeTimeoutMs: number) {
    this.dir = dir;
    this.nodes = nodes;
    this.nodeTimeoutMs = nodeTimeoutMs;
  }

  /** Starts six nodes, creates the cluster, waits until it is ok everywhere. */
  static async start(options: RedisClusterOptions = {}): Promise<LocalRedisCluster> {
    const dir = await Deno.makeTempDir({ prefix: "gb-redis-cluster-" });
    const ports = freePorts(12);
    const nodes = Array.from({ length: 6 }, (_, i) => ({
      port: ports[i]!,
      busPort: ports[i + 6]!,
      process: undefined as Deno.ChildProcess | undefined,
    }));
    const cluster = new LocalRedisCluster(dir, nodes, options.nodeTimeoutMs ?? 1000);
    try {
      for (const node of nodes) cluster.#spawn(node);
      for (const node of nodes) await waitFor(`node ${node.port} up`, () => cluster.#pong(node));
      const create = await new Deno.Command("redis-cli", {
        args: [
          "--cluster",
          "create",
          ...nodes.map((n) => `127.0.0.1:${n.port}`),
          "--cluster-replicas",
          "1",
          "--cluster-yes",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!create.success) {
        throw new Error(`redis-cli --cluster create: ${new TextDecoder().decode(create.stderr)}`);
      }
      await cluster.waitHealthy();
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  /** `host:port` seeds, as `REDIS_CLUSTER_NODES` takes them. */
  get seeds(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(",");
  }

  /**
   * Runs `command` on a connection of its own to the node at `port`, closed afterwards (so no
   * test leaves a connection open for the next one).
   */
  async call<T = unknown>(port: number, ...args: (string | number)[]): Promise<T> {
    const redis = new Redis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      commandTimeout: 2000,
      retryStrategy: () => null,
    });
    redis.on("error", () => {});
    try {
      await redis.connect();
      return await redis.call(String(args[0]), ...args.slice(1)) as T;
    } finally {
      redis.disconnect();
    }
  }

  /** The port of the primary serving `slot`, asked of a running, unfrozen node. */
  async primaryOfSlot(slot: number): Promise<number> {
    for (const node of this.#running()) {
      try {
        const shards = await this.call<[number, number, [string, number, string]][]>(
          node.port,
          "CLUSTER",
          "SLOTS",
        );
        for (const [from, to, primary] of shards) {
          if (slot >= from && slot <= to) return primary[1];
        }
      } catch {
        // Try the next node.
      }
    }
    throw new Error(`no primary serves slot ${slot}`);
  }

  /** The port of the primary serving `key` (or a shard channel). */
  primaryOf(key: string): Promise<number> {
    return this.primaryOfSlot(hashSlot(key));
  }

  /** The ports of the current replicas of the primary at `port`. */
  async replicasOf(port: number): Promise<number[]> {
    const id = await this.#id(port);
    const out: number[] = [];
    for (const node of this.#running()) {
      if (node.port === port) continue;
      const info = await this.call<string>(node.port, "INFO", "replication");
      const master = /master_port:(\d+)/.exec(info)?.[1];
      const myId = await this.#id(node.port);
      if (Number(master) === port && myId !== id) out.push(node.port);
    }
    return out;
  }

  /** kill -9 of the node at `port`. */
  async kill(port: number): Promise<void> {
    const node = this.#node(port);
    const child = node.process;
    node.process = undefined;
    if (child === undefined) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
  }

  /** Starts a killed node again with its own `nodes.conf`: it rejoins (as a replica). */
  async restart(port: number): Promise<void> {
    const node = this.#node(port);
    if (node.process !== undefined) return;
    this.#spawn(node);
    await waitFor(`node ${port} back`, () => this.#pong(node));
  }

  /** SIGSTOP: the node neither answers nor closes anything. */
  freeze(port: number): void {
    this.#node(port).process?.kill("SIGSTOP");
  }

  /** SIGCONT after `freeze`. */
  thaw(port: number): void {
    this.#node(port).process?.kill("SIGCONT");
  }

  /** `CLUSTER FAILOVER` on a replica of the primary at `port`; resolves once it is primary. */
  async failover(port: number): Promise<number> {
    const [replica] = await this.replicasOf(port);
    if (replica === undefined) throw new Error(`primary ${port} has no replica`);
    await this.call(replica, "CLUSTER", "FAILOVER");
    await waitFor(`replica ${replica} promoted`, async () => {
      const info = await this.call<string>(replica, "INFO", "replication");
      return info.includes("role:master");
    });
    await this.waitHealthy();
    return replica;
  }

  /**
   * Moves `slot` with its keys from the primary at `from` to the one at `to`, the way
   * `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE of every key, then
   * SETSLOT NODE on both ends and on every other primary. With `lose`, the keys are deleted
   * instead of migrated: the new owner serves the slot without them, as a failover that lost
   * the shard's last writes would.
   */
  async migrateSlot(slot: number, from: number, to: number, lose = false): Promise<void> {
    const [fromId, toId] = [await this.#id(from), await this.#id(to)];
    await this.call(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromId);
    await this.call(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toId);
    for (;;) {
      const keys = await this.call<string[]>(from, "CLUSTER", "GETKEYSINSLOT", slot, 100);
      if (keys.length === 0) break;
      if (lose) await this.call(from, "DEL", ...keys); // one slot: one DEL takes them all
      else await this.call(from, "MIGRATE", "127.0.0.1", to, "", 0, 5000, "KEYS", ...keys);
    }
    await this.call(to, "CLUSTER", "SETSLOT", slot, "NODE", toId);
    await this.call(from, "CLUSTER", "SETSLOT", slot, "NODE", toId);
    for (const port of await this.primaries()) {
      if (port !== from && port !== to) {
        await this.call(port, "CLUSTER", "SETSLOT", slot, "NODE", toId);
      }
    }
    await this.waitHealthy();
  }

  /** Ports of the running nodes that are primaries now. */
  async primaries(): Promise<number[]> {
    const out: number[] = [];
    for (const node of this.#running()) {
      try {
        const info = await this.call<string>(node.port, "INFO", "replication");
        if (info.includes("role:master")) out.push(node.port);
      } catch {
        // Frozen or down: not counted.
      }
    }
    return out;
  }

  /**
   * Waits until every running node says `cluster_state:ok`, every slot has a primary, and
   * every primary has a replica that is in sync (so that the next drill can fail over).
   */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    await waitFor("cluster healthy", async () => {
      for (const node of this.#running()) {
        const info = await this.call<string>(node.port, "CLUSTER", "INFO");
        if (!info.includes("cluster_state:ok")) return false;
        if (!info.includes(`cluster_slots_ok:${HASH_SLOTS}`)) return false;
        const repl = await this.call<string>(node.port, "INFO", "replication");
        if (repl.includes("role:slave") && !repl.includes("master_link_status:up")) return false;
      }
      const primaries = await this.primaries();
      if (primaries.length !== 3) return false;
      for (const port of primaries) {
        if ((await this.replicasOf(port)).length === 0) return false;
      }
      return true;
    }, timeoutMs);
  }

  /** Kills every node and removes the temp dir. */
  async stop(): Promise<void> {
    for (const node of this.nodes) {
      this.thaw(node.port);
      await this.kill(node.port);
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** Synchronous last resort (process exit): SIGKILL every node. */
  killAllSync(): void {
    for (const node of this.nodes) {
      try {
        node.process?.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }

  #spawn(node: ClusterNodeProcess): void {
    node.process = new Deno.Command("redis-server", {
      args: [
        "--bind",
        "127.0.0.1",
        "--port",
        String(node.port),
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        String(node.busPort),
        "--cluster-config-file",
        `nodes-${node.port}.conf`,
        "--cluster-node-timeout",
        String(this.nodeTimeoutMs),
        // Slots of a shard with no primary stay down; the others keep serving.
        "--cluster-require-full-coverage",
        "no",
        "--cluster-replica-validity-factor",
        "0",
        // A replica syncs at once instead of after the default 5 s wait for more replicas.
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
        this.dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        `redis-${node.port}.log`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  async #pong(node: ClusterNodeProcess): Promise<boolean> {
    try {
      return (await this.call(node.port, "PING")) === "PONG";
    } catch {
      return false;
    }
  }

  async #id(port: number): Promise<string> {
    return await this.call<string>(port, "CLUSTER", "MYID");
  }

  #running(): ClusterNodeProcess[] {
    return this.nodes.filter((n) => n.process !== undefined);
  }

  #node(port: number): ClusterNodeProcess {
    const node = this.nodes.find((n) => n.port === port);
    if (node === undefined) throw new Error(`no cluster node on port ${port}`);
    return node;
  }
}

/**
 * Starts this test file's one cluster (call it at the top of the file, outside any test, so
 * that its processes are no test's leak); undefined when `redisClusterSkip` says it cannot.
 * `stopAfterTests` stops it.
 */
export async function startLocalRedisCluster(
  options: RedisClusterOptions = {},
): Promise<LocalRedisCluster | undefined> {
  if (redisClusterSkip() !== undefined) return undefined;
  const cluster = await LocalRedisCluster.start(options);
  // A run that filters the last test out still leaves no redis-server behind.
  globalThis.addEventListener("unload", () => cluster.killAllSync());
  return cluster;
}

/** Registers the file's last test: it stops `cluster`. */
export function stopAfterTests(cluster: LocalRedisCluster | undefined): void {
  Deno.test({
    name: "the local Redis Cluster stops after the tests",
    ignore: cluster === undefined,
    // Its processes and connections were opened before the tests, outside any of them.
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => cluster!.stop(),
  });
}

/** Buses on `cluster` (under a random prefix each test), as the bus suites take a kind of cluster. */
export function onRedisCluster(cluster: LocalRedisCluster | undefined): ClusterKind {
  return {
    name: "redis-cluster",
    skip: cluster === undefined ? redisClusterSkip() ?? "skipped: no Redis Cluster" : undefined,
    create: (ttl = 1) => redisCluster(cluster!.seeds.split(","), ttl),
  };
}

function freePorts(n: number): number[] {
  const listeners = Array.from({ length: n }, () => {
    for (;;) {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      // A cluster bus port is the port + 10000 unless set: keep both in range either way.
      if ((listener.addr as Deno.NetAddr).port < 55000) return listener;
      listener.close();
    }
  });
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not yet.
    }
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
