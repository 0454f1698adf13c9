/**
 * What only the Redis bus has to survive: Redis losing its keys, Redis going away and coming
 * back (a private `redis-server` the test starts and kills), and a subscription Redis dropped
 * without a word. Ignored when `REDIS_URL` is unset.
 */

import assert from "node:assert/strict";
import { Redis } from "ioredis";
import type { BusDelivery, PresenceStatus } from "../src/bus/bus.ts";
import { RedisKeys } from "../src/bus/redis/keys.ts";
import { SingleRedis } from "../src/bus/redis/shards.ts";
import { Subscriptions } from "../src/bus/redis/subscriptions.ts";
import { createLogger } from "../src/log.ts";
import { deleteKeys, REDIS_URL, redisCluster } from "./support/cluster.ts";
import { freePort } from "./support/process.ts";
import { eventually, sleep } from "./support/wait.ts";

const ignore = REDIS_URL === undefined;
const suffix = ignore ? " (skipped: REDIS_URL unset)" : "";

Deno.test({
  name:
    `a node re-registers its users and slots and reports them online after Redis lost its keys${suffix}`,
  ignore,
  async fn() {
    const cluster = redisCluster(REDIS_URL!, 1);
    try {
      const [a, b] = [await cluster.node(), await cluster.node()];
      const reports: [number, PresenceStatus][] = [];
      a.onPresenceChange?.((id, status) => reports.push([id, status]));
      await a.join(1);
      assert.equal(await a.acquireConnection(1, 1), true);
      await deleteKeys(REDIS_URL!, cluster.prefix!);
      assert.deepEqual([...(await b.online([1]))], []);
      await eventually("a re-registered", async () => (await b.online([1])).has(1), 2000);
      await eventually("a reported it", () => reports.length > 0);
      assert.deepEqual(reports, [[1, "online"]]);
      const redis = new Redis(REDIS_URL!);
      try {
        await eventually(
          "a's slot written back",
          async () => (await slotsHeld(redis, cluster.prefix!, 1, a.nodeId)) === 1,
        );
      } finally {
        redis.disconnect();
      }
      assert.equal(await b.acquireConnection(1, 1), false, "a's slot counts for b too");
      assert.equal(await a.leave(1), true);
    } finally {
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    `after Redis lost its keys, re-registered users are reported online in paced batches${suffix}`,
  ignore,
  async fn() {
    const cluster = redisCluster(REDIS_URL!, 1);
    try {
      const a = await cluster.node();
      const reports: number[] = [];
      let firstBurst: number | undefined;
      a.onPresenceChange?.((id, status) => {
        if (status !== "online") return;
        reports.push(id);
        // What one burst handed the hub: everything reported before the next macrotask.
        if (reports.length === 1) setTimeout(() => (firstBurst = reports.length), 0);
      });
      for (let id = 1; id <= 1200; id++) await a.join(id);
      await deleteKeys(REDIS_URL!, cluster.prefix!);
      await eventually("all 1200 reported", () => reports.length === 1200, 10_000);
      assert.ok(firstBurst !== undefined && firstBurst <= 500, `first burst: ${firstBurst}`);
      assert.equal(new Set(reports).size, 1200, "each once");
    } finally {
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name: `a Redis outage throws nothing, and afterwards delivery and presence recover${suffix}`,
  ignore,
  async fn() {
    let { port, server } = await startOwnRedis();
    const url = `redis://127.0.0.1:${port}`;
    const cluster = redisCluster(url, 1);
    try {
      const [a, b] = [await cluster.node(), await cluster.node()];
      const got: BusDelivery[] = [];
      const reports: [number, PresenceStatus][] = [];
      a.onDelivery((delivery) => got.push(delivery));
      for (const node of [a, b]) {
        node.onPresenceChange?.((id, status) => reports.push([id, status]));
      }
      await a.subscribe(1);
      await a.join(1);
      await b.join(2);

      await stopRedis(server);
      b.publish({ userId: 1, frame: "{}", droppable: false });
      assert.equal(await b.join(3), false, "no answer: treated as no change");
      assert.equal(await b.leave(2), false);
      assert.deepEqual([...(await a.online([1, 2, 3]))], [1], "local answer during the outage");
      await a.subscribe(4); // while disconnected: subscribed on reconnect
      assert.equal(a.isReady(), false, "not ready while Redis is gone");
      assert.equal(await a.acquireConnection(5, 2), true, "answered from this node's count");
      assert.equal(await a.acquireConnection(5, 2), true);
      assert.equal(await a.acquireConnection(5, 2), false);

      server = startRedis(port); // empty: Redis lost everything
      await eventually("presence reconciled", async () => {
        const online = await b.online([1, 2, 3]);
        return online.has(1) && online.has(3) && !online.has(2);
      }, 10_000);
      await eventually("deliveries flow again", () => {
        b.publish({ userId: 4, frame: '{"n":4}', droppable: true });
        return got.some((d) => d.userId === 4);
      }, 10_000);
      b.publish({ userId: 1, frame: '{"n":1}', droppable: false });
      await eventually("user 1 resubscribed", () => got.some((d) => d.frame === '{"n":1}'));
      await eventually("ready again", () => a.isReady() && b.isReady(), 10_000);
      const redis = new Redis(url);
      try {
        await eventually(
          "a's slots written back to the emptied Redis",
          async () => (await slotsHeld(redis, cluster.prefix!, 5, a.nodeId)) === 2,
          10_000,
        );
      } finally {
        redis.disconnect();
      }
      assert.equal(await b.acquireConnection(5, 2), false, "a's two count for b too");
      await eventually("changes reported", () => reports.length >= 3);
      assert.deepEqual(
        reports.sort(),
        [[1, "online"], [2, "offline"], [3, "online"]],
        "a join or leave lost in the outage is reported once Redis is back",
      );
    } finally {
      await cluster.cleanup();
      await stopRedis(server);
    }
  },
});

Deno.test({
  name:
    `a frame for a user no other node holds does not go through Redis; once another node subscribes it does${suffix}`,
  ignore,
  async fn() {
    const cluster = redisCluster(REDIS_URL!, 1);
    // MONITOR shows every SPUBLISH the publish script runs, and subscribes to nothing.
    const monitor = await new Redis(REDIS_URL!).monitor();
    try {
      const seen: string[] = [];
      monitor.on("monitor", (_time: string, args: string[]) => {
        if (args[0]?.toLowerCase() === "spublish") seen.push(args[1]!);
      });
      const [a, b] = [await cluster.node(), await cluster.node()];
      const atB: BusDelivery[] = [];
      b.onDelivery((delivery) => atB.push(delivery));
      // Publishes of one node reach Redis in order: once the marker (for a user a does not
      // hold, so always published) is seen, anything published before it would have been too.
      let markers = 0;
      const publishAndMark = async (delivery: BusDelivery) => {
        a.publish(delivery);
        const marker = `${cluster.prefix}{u:${900 + ++markers}}`;
        a.publish({ userId: 900 + markers, frame: "{}", droppable: false });
        await eventually("marker seen", () => seen.includes(marker));
      };
      const user1 = `${cluster.prefix}{u:1}`;

      await a.subscribe(1);
      await publishAndMark({ userId: 1, frame: '{"n":1}', droppable: false });
      assert.deepEqual(seen.filter((c) => c === user1), [], "only a holds user 1");

      await b.subscribe(1);
      await publishAndMark({ userId: 1, frame: '{"n":2}', droppable: false });
      assert.equal(seen.filter((c) => c === user1).length, 1, "b holds user 1 too");
      await eventually("b got it", () => atB.some((d) => d.frame === '{"n":2}'));

      await b.unsubscribe(1);
      await publishAndMark({ userId: 1, frame: '{"n":3}', droppable: false });
      assert.equal(seen.filter((c) => c === user1).length, 1, "only a again");
      assert.equal(atB.filter((d) => d.userId === 1).length, 1);
    } finally {
      monitor.disconnect();
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name: `frames published in one turn reach the other node all and in order${suffix}`,
  ignore,
  async fn() {
    const cluster = redisCluster(REDIS_URL!, 1);
    try {
      const [a, b] = [await cluster.node(), await cluster.node()];
      const got: number[] = [];
      b.onDelivery((delivery) => got.push(JSON.parse(delivery.frame).n));
      await b.subscribe(7);
      await a.subscribe(8); // a holds 8 alone: its frames stay home, the others' order holds
      for (let n = 0; n < 1200; n++) {
        a.publish({ userId: n % 3 === 0 ? 8 : 7, frame: JSON.stringify({ n }), droppable: false });
      }
      const expected = Array.from({ length: 1200 }, (_, n) => n).filter((n) => n % 3 !== 0);
      await eventually("all arrived", () => got.length >= expected.length, 5000);
      assert.deepEqual(got, expected);
    } finally {
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    `a subscription Redis dropped without a word is found by the audit and subscribed again${suffix}`,
  ignore,
  async fn() {
    const events: string[] = [];
    const logger = createLogger("info", (line) => events.push(JSON.parse(line).event));
    const health = (_name: string, clock: boolean) => ({
      intervalMs: 1000,
      deadlineMs: 2500,
      clock,
      onHealth: () => {},
    });
    const options = { lazyConnect: true, autoResubscribe: false, enableOfflineQueue: false };
    const shards = new SingleRedis(REDIS_URL!, options, health);
    // The subscriber connection, to unsubscribe behind the bus's back.
    const opened: Redis[] = [];
    const [address] = shards.primaries();
    const open = address!.open;
    address!.open = (o) => {
      const conn = open(o);
      opened.push(conn);
      return conn;
    };
    const keys = new RedisKeys(`gbtest:${crypto.randomUUID().slice(0, 8)}:`);
    const got: string[] = [];
    const subscriptions = new Subscriptions({
      shards,
      keys,
      clientOptions: options,
      health,
      logger,
      onMessage: (_channel, message) => got.push(message),
      onSubscribed: () => {},
    });
    const publisher = new Redis(REDIS_URL!);
    try {
      await shards.connect();
      await subscriptions.start(5000);
      const channel = keys.channel(42);
      await subscriptions.subscribe(channel, keys.slotOf(42));
      assert.equal(await publisher.spublish(channel, "before"), 1);
      await eventually("delivered", () => got.includes("before"));

      await opened[0]!.sunsubscribe(channel);
      assert.equal(await publisher.spublish(channel, "lost"), 0, "Redis no longer has it");
      assert.equal(subscriptions.isConfirmed(channel), true, "and the bus was not told");
      await eventually(
        "subscribed again",
        async () => (await publisher.spublish(channel, "after")) === 1,
        15_000,
      );
      await eventually("delivered again", () => got.includes("after"));
      assert.ok(events.includes("bus_subscription_lost"), events.join());
    } finally {
      publisher.disconnect();
      await subscriptions.close();
      await shards.close();
    }
  },
});

/** The connection slots a node (any registration of it) holds for `userId`, as Redis has them. */
async function slotsHeld(
  redis: Redis,
  prefix: string,
  userId: number,
  nodeId: string,
): Promise<number> {
  const fields = await redis.hgetall(`${prefix}{u:${userId}}:conn`);
  let held = 0;
  for (const [member, count] of Object.entries(fields)) {
    if (member.startsWith(`${nodeId}#`)) held += Number(count);
  }
  return held;
}

function startRedis(port: number): Deno.ChildProcess {
  return new Deno.Command("redis-server", {
    args: ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/**
 * A redis-server of this test's own on a free port, answering PING. A free port can be taken by
 * another process (another test file's Redis) between choosing and binding it: then this server
 * exits at once, the PING was answered by the other one, and another port is tried.
 */
async function startOwnRedis(): Promise<{ port: number; server: Deno.ChildProcess }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    const server = startRedis(port);
    const url = `redis://127.0.0.1:${port}`;
    await eventually("redis up", async () => await pingable(url), 5000).catch(() => {});
    const exited = await Promise.race([
      server.status.then(() => true),
      sleep(200).then(() => false),
    ]);
    if (!exited && await pingable(url)) return { port, server };
    await stopRedis(server);
  }
  throw new Error("no redis-server of this test's own came up on a free port");
}

async function stopRedis(server: Deno.ChildProcess): Promise<void> {
  try {
    server.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await server.status;
}

/**
 * Whether a Redis answers PING on `url`'s port. A bare TCP connect is not enough: to a free port
 * of the ephemeral range it can succeed with nothing listening (a socket connected to itself),
 * and the test's clients were then refused (seen: ECONNREFUSED right after "redis up").
 */
async function pingable(url: string): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buf = new Uint8Array(16);
    const timer = setTimeout(() => conn?.close(), 500);
    const n = await conn.read(buf).finally(() => clearTimeout(timer));
    return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG");
  } catch {
    return false;
  } finally {
    try {
      conn?.close();
    } catch {
      // Closed by the timer already.
    }
  }
}
