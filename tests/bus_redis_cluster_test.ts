/**
 * Failure drills on a local Redis Cluster (3 primaries, 3 replicas, `cluster-node-timeout`
 * 1 s) that this file starts and stops: kill -9 of the primary serving a connected user's
 * slot, `CLUSTER FAILOVER`, a slot migration that loses the slot's keys (as a failover can lose
 * a shard's last writes), and a primary frozen with SIGSTOP past the node timeout. After each,
 * delivery across nodes resumes within `PRESENCE_TTL_S` of the promotion (or move), nothing is
 * delivered twice, presence and connection slots are right again, and nothing acknowledged is
 * lost. Each drill prints what it measured (`drill ...` lines). The bus drills also hold 300 more
 * users on every shard, whose channels must all be subscribed again (one SSUBSCRIBE per slot).
 */

import assert from "node:assert/strict";
import type { BusDelivery } from "../src/bus/bus.ts";
import type { RedisBus } from "../src/bus/redis/bus.ts";
import { hashSlot } from "../src/bus/redis/keys.ts";
import { redisCluster } from "./support/cluster.ts";
import type { TestClient } from "./support/client.ts";
import { createTestDatabase } from "./support/db.ts";
import {
  type LocalRedisCluster,
  redisClusterSkip,
  startLocalRedisCluster,
  stopAfterTests,
} from "./support/redis_cluster.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { eventually, sleep } from "./support/wait.ts";

const local = await startLocalRedisCluster({ nodeTimeoutMs: 1000 });
const suffix = local === undefined ? ` (${redisClusterSkip()})` : "";
/** Delivery must be back within this after a promotion or a move. */
const PRESENCE_TTL_S = 5;

/** The slot of everything about `userId` (`src/bus/redis/keys.ts`). */
const slotOf = (userId: number) => hashSlot(`{u:${userId}}`);

/** Deliveries received by a node, each with when it arrived. */
type Received = { delivery: BusDelivery; at: number }[];

/** Users b also holds, in slots of every shard: their channels are subscribed again per slot. */
const MANY = Array.from({ length: 300 }, (_, i) => 1000 + i);

interface BusDrill {
  cluster: LocalRedisCluster;
  a: RedisBus;
  b: RedisBus;
  got: Received;
  user: number;
  /** The port of the primary serving the user's slot when the drill began. */
  primary: number;
}

/**
 * A drill on two bus nodes: b holds `user` (subscribed, joined, one connection slot), a
 * publishes to them. The cluster is healthy again (every shard with a replica) afterwards.
 */
function busDrill(name: string, body: (drill: BusDrill) => Promise<void>): void {
  Deno.test({
    name: name + suffix,
    ignore: local === undefined,
    async fn() {
      const cluster = local!;
      await cluster.waitHealthy();
      const buses = redisCluster(cluster.seeds.split(","), PRESENCE_TTL_S);
      try {
        const [a, b] = [await buses.nodeWith({}), await buses.nodeWith({})];
        const got: Received = [];
        b.onDelivery((delivery) => got.push({ delivery, at: performance.now() }));
        const user = 7;
        await b.subscribe(user);
        assert.equal(await b.join(user), true);
        assert.equal(await b.acquireConnection(user, 1), true);
        for (const id of MANY) await b.subscribe(id);
        await probeUntilDelivered(a, got, user, performance.now(), 5000);
        const primary = await cluster.primaryOfSlot(slotOf(user));
        await body({ cluster, a, b, got, user, primary });
        await eventually("every one of b's users gets frames again", () => {
          const seen = new Set(got.map((r) => r.delivery.userId));
          const missing = MANY.filter((id) => !seen.has(id));
          for (const id of missing) {
            a.publish({ userId: id, frame: `{"to":${id}}`, droppable: false });
          }
          return missing.length === 0;
        }, 10_000);
      } finally {
        await buses.cleanup();
        await cluster.waitHealthy();
      }
    },
  });
}

let probes = 0;

/**
 * Publishes a numbered probe from `from` every 50 ms until one published after `since` arrives;
 * resolves with when it arrived.
 */
async function probeUntilDelivered(
  from: RedisBus,
  got: Received,
  userId: number,
  since: number,
  timeoutMs: number,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  const sentAt = new Map<string, number>();
  for (;;) {
    const hit = got.find((r) => (sentAt.get(r.delivery.frame) ?? -Infinity) >= since);
    if (hit !== undefined) return hit.at;
    if (performance.now() > deadline) throw new Error(`no probe delivered in ${timeoutMs} ms`);
    const frame = JSON.stringify({ probe: ++probes });
    sentAt.set(frame, performance.now());
    from.publish({ userId, frame, droppable: false });
    await sleep(50);
  }
}

/** Resolves with when a primary other than `old` serves `slot`. */
async function promotion(cluster: LocalRedisCluster, slot: number, old: number): Promise<number> {
  await eventually("a new primary serves the slot", async () => {
    try {
      return (await cluster.primaryOfSlot(slot)) !== old;
    } catch {
      return false; // no primary serves it yet
    }
  }, 20_000);
  return performance.now();
}

/** Every frame arrived at most once. */
function assertNoDuplicates(got: Received): void {
  const frames = got.map((r) => r.delivery.frame);
  assert.equal(new Set(frames).size, frames.length, "a frame was delivered twice");
}

/** a sees b's user online and b's one slot counted again (they were written back if lost). */
async function assertPresenceAndSlots({ a, user }: BusDrill): Promise<void> {
  await eventually("presence back", async () => (await a.online([user])).has(user), 10_000);
  await eventually("b's slot counts for a", async () => {
    const took = await a.acquireConnection(user, 1);
    if (took) await a.releaseConnection(user);
    return !took;
  }, 10_000);
}

function report(drill: string, fields: Record<string, number>): void {
  const parts = Object.entries(fields).map(([k, v]) => `${k} ${Math.round(v)} ms`);
  console.log(`drill ${drill}: ${parts.join(", ")}`);
}

busDrill(
  "CLUSTER FAILOVER of the user's primary: delivery resumes within PRESENCE_TTL_S, nothing twice",
  async (drill) => {
    const { cluster, a, got, user, primary } = drill;
    const began = performance.now();
    const resumed = probeUntilDelivered(a, got, user, began, 20_000);
    await cluster.failover(primary);
    const promotedAt = performance.now();
    const back = await probeUntilDelivered(a, got, user, promotedAt, PRESENCE_TTL_S * 1000);
    await resumed;
    report("CLUSTER FAILOVER", { promoted: promotedAt - began, delivery_back: back - promotedAt });
    assert.ok(back - promotedAt <= PRESENCE_TTL_S * 1000);
    await assertPresenceAndSlots(drill);
    assertNoDuplicates(got);
  },
);

busDrill(
  "a slot migration that loses the slot's keys: delivery follows the slot, presence and slots are written back",
  async (drill) => {
    const { cluster, a, got, user, primary } = drill;
    const [target] = (await cluster.primaries()).filter((port) => port !== primary);
    const began = performance.now();
    await cluster.migrateSlot(slotOf(user), primary, target!, true);
    const movedAt = performance.now();
    const back = await probeUntilDelivered(a, got, user, movedAt, PRESENCE_TTL_S * 1000);
    report("slot migration", { moved: movedAt - began, delivery_back: back - movedAt });
    await assertPresenceAndSlots(drill);
    assertNoDuplicates(got);
  },
);

busDrill(
  "a primary frozen with SIGSTOP past the node timeout: its replica takes over, delivery resumes within PRESENCE_TTL_S, and the thawed node rejoins as a replica",
  async (drill) => {
    const { cluster, a, b, got, user, primary } = drill;
    const began = performance.now();
    cluster.freeze(primary);
    try {
      const promotedAt = await promotion(cluster, slotOf(user), primary);
      const back = await probeUntilDelivered(a, got, user, promotedAt, PRESENCE_TTL_S * 1000);
      report("SIGSTOP of a primary", {
        promoted: promotedAt - began,
        delivery_back: back - promotedAt,
      });
      assert.ok(back - promotedAt <= PRESENCE_TTL_S * 1000);
    } finally {
      cluster.thaw(primary);
    }
    await eventually("b ready again", () => b.isReady() && a.isReady(), 20_000);
    await assertPresenceAndSlots(drill);
    assertNoDuplicates(got);
  },
);

/** Users 1 and 2 are friends; alice (1) on node A, bob (2) on node B. */
Deno.test({
  name:
    `kill -9 of the primary serving bob's slot: delivery to bob resumes within PRESENCE_TTL_S of the promotion, and every message alice was acknowledged reaches him${suffix}`,
  ignore: local === undefined,
  async fn() {
    const cluster = local!;
    await cluster.waitHealthy();
    const db = await createTestDatabase();
    const buses = redisCluster(cluster.seeds.split(","), PRESENCE_TTL_S);
    const nodes: TestServer[] = [];
    const primary = await cluster.primaryOfSlot(slotOf(2));
    try {
      for (let i = 0; i < 2; i++) nodes.push(await startTestServer({ db, bus: buses.node }));
      const [nodeA, nodeB] = nodes as [TestServer, TestServer];
      await db.seed({ users: [1, 2], friends: [[1, 2]] });
      const bob = await nodeB.connectAs(2);
      const alice = await nodeA.connectAs(1);
      await nodeA.server.hub.settled();
      await nodeB.server.hub.settled();

      const acked: { id: number; sentAt: number }[] = [];
      let sending = true;
      const sender = (async () => {
        for (let n = 0; sending; n++) {
          const sentAt = performance.now();
          alice.send({ type: "chat_message", recipient_user_id: 2, message_text: `m${n}` });
          const sent = await alice.next("message_sent", 10_000);
          acked.push({ id: (sent.data as { message_id: number }).message_id, sentAt });
          await sleep(100);
        }
      })();
      await bob.next("chat_message"); // flowing before the drill
      const began = performance.now();
      await cluster.kill(primary);
      const promotedAt = await promotion(cluster, slotOf(2), primary);
      const back = await liveAfter(bob, acked, promotedAt, PRESENCE_TTL_S * 1000);
      report("kill -9 of a primary", {
        promoted: promotedAt - began,
        delivery_back: back - promotedAt,
      });
      assert.ok(back - promotedAt <= PRESENCE_TTL_S * 1000);
      sending = false;
      await sender;

      const seen = new Set<number>();
      for (const frame of bob.frames) {
        if (frame.type === "chat_message") seen.add(frame.message_id as number);
      }
      bob.send({ type: "sync", after_message_id: 0, limit: 500 });
      const synced = await bob.next("sync_result");
      for (const m of synced.messages as { message_id: number }[]) seen.add(m.message_id);
      const lost = acked.filter(({ id }) => !seen.has(id));
      assert.deepEqual(lost, [], "every acknowledged message reaches bob, live or by sync");
    } finally {
      for (const node of nodes) await node.close();
      await buses.cleanup();
      await db.drop();
      await cluster.restart(primary);
      await cluster.waitHealthy();
    }
  },
});

/**
 * Resolves with when bob received, live, a message alice sent after `since` (acknowledged
 * messages are in `acked` with when they were sent).
 */
async function liveAfter(
  bob: TestClient,
  acked: { id: number; sentAt: number }[],
  since: number,
  timeoutMs: number,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const after = new Set(acked.filter((m) => m.sentAt >= since).map((m) => m.id));
    if (bob.frames.some((f) => f.type === "chat_message" && after.has(f.message_id as number))) {
      return performance.now();
    }
    if (performance.now() > deadline) throw new Error(`no live message in ${timeoutMs} ms`);
    await sleep(20);
  }
}

stopAfterTests(local);
