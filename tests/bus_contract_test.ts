/**
 * The `Bus` contract, one suite run against every implementation: the memory cluster, Redis at
 * `REDIS_URL`, and a local Redis Cluster (3 primaries, 3 replicas) this file starts and stops
 * (each Redis test under its own key prefix, deleted afterwards).
 */

import assert from "node:assert/strict";
import type { BusDelivery, PresenceStatus } from "../src/bus/bus.ts";
import {
  CLUSTER_KINDS,
  type ClusterKind,
  clusterTest,
  type TestBus,
  type TestCluster,
} from "./support/cluster.ts";
import { onRedisCluster, startLocalRedisCluster, stopAfterTests } from "./support/redis_cluster.ts";
import { eventually, sleep } from "./support/wait.ts";

const localCluster = await startLocalRedisCluster();

/** Runs the contract against clusters made by `kind`. */
function busContract(kind: ClusterKind): void {
  const test = (name: string, body: (cluster: TestCluster) => Promise<void>) =>
    clusterTest(kind, name, body);

  test("a publish reaches the other subscribed nodes only, frame and flag intact", async (c) => {
    const [a, b, c2, d] = [await c.node(), await c.node(), await c.node(), await c.node()];
    const got = new Map<TestBus, BusDelivery[]>();
    for (const node of [a, b, c2, d]) {
      got.set(node, []);
      node.onDelivery((delivery) => got.get(node)!.push(delivery));
    }
    await a.subscribe(7);
    await b.subscribe(7);
    await c2.subscribe(7);
    await c2.unsubscribe(7);
    await d.subscribe(8);
    const frame = JSON.stringify({ type: "chat_message", message_text: "a|b\n1 ünï 🐉" });
    a.publish({ userId: 7, frame, droppable: false });
    a.publish({ userId: 7, frame: "{}", droppable: true });
    await eventually("b gets both", () => got.get(b)!.length === 2);
    assert.deepEqual(got.get(b), [
      { userId: 7, frame, droppable: false },
      { userId: 7, frame: "{}", droppable: true },
    ]);
    await sleep(100);
    assert.deepEqual(got.get(a), [], "the publisher already delivered locally");
    assert.deepEqual(got.get(c2), [], "unsubscribed");
    assert.deepEqual(got.get(d), [], "another user's channel");
  });

  test("join is first only on the first node and leave last only on the last", async (c) => {
    const [a, b] = [await c.node(), await c.node()];
    assert.equal(await a.join(1), true);
    assert.equal(await b.join(1), false);
    assert.equal(await a.leave(1), false);
    assert.equal(await b.leave(1), true);
    assert.equal(await b.join(1), true, "online again after everyone left");
    assert.equal(await b.leave(1), true);
  });

  test("online() sees users present on any node and no others", async (c) => {
    const [a, b] = [await c.node(), await c.node()];
    await a.join(1);
    await b.join(2);
    await b.join(1);
    for (const node of [a, b]) {
      assert.deepEqual([...(await node.online([1, 2, 3]))].sort(), [1, 2]);
      assert.deepEqual([...(await node.online([]))], []);
    }
    await b.leave(2);
    assert.deepEqual([...(await a.online([1, 2, 3]))], [1]);
  });

  test("close() leaves every user of the node and stops its deliveries", async (c) => {
    const [a, b] = [await c.node(), await c.node()];
    const got: BusDelivery[] = [];
    a.onDelivery((delivery) => got.push(delivery));
    await a.subscribe(2);
    await a.join(1);
    await a.join(2);
    await b.join(2);
    assert.equal(a.isReady(), true);
    await a.close();
    assert.equal(a.isReady(), false, "a closed node is not ready");
    assert.equal(await a.acquireConnection(1, 10), false, "nor takes slots");
    assert.deepEqual([...(await b.online([1, 2]))], [2]);
    assert.equal(await b.leave(2), true, "b was the last node of user 2");
    b.publish({ userId: 2, frame: "{}", droppable: false });
    await sleep(100);
    assert.deepEqual(got, []);
  });

  test("a dead node's users go offline and are reported once, to one survivor", async (c) => {
    const [dead, b, d] = [await c.node(), await c.node(), await c.node()];
    const reports: [number, PresenceStatus][] = [];
    for (const node of [b, d]) node.onPresenceChange?.((id, status) => reports.push([id, status]));
    await dead.join(1);
    await dead.join(2);
    await b.join(2);
    const diedAt = Date.now();
    dead.abandon();
    await eventually("user 1 reported offline", () => reports.length > 0, c.deadNodeBoundMs + 2000);
    assert.ok(Date.now() - diedAt <= c.deadNodeBoundMs + 1000, "within the documented bound");
    assert.deepEqual([...(await b.online([1, 2]))], [2]);
    await sleep(c.deadNodeBoundMs / 2 + 100);
    assert.deepEqual(reports, [[1, "offline"]], "user 2 is still on b; user 1 only once");
    assert.equal(await b.leave(2), true);
  });

  test("a closing delivery crosses nodes with its flag", async (c) => {
    const [a, b] = [await c.node(), await c.node()];
    const got: BusDelivery[] = [];
    b.onDelivery((delivery) => got.push(delivery));
    await b.subscribe(7);
    const frame = JSON.stringify({ type: "session_expired", reason: "banned" });
    a.publish({ userId: 7, frame, droppable: false, close: true });
    a.publish({ userId: 7, frame: "{}", droppable: false });
    await eventually("b gets both", () => got.length === 2);
    assert.deepEqual(got, [
      { userId: 7, frame, droppable: false, close: true },
      { userId: 7, frame: "{}", droppable: false },
    ]);
  });

  test("connection slots count across nodes: of 10, the 11th is refused anywhere", async (c) => {
    const [a, b] = [await c.node(), await c.node()];
    for (let i = 0; i < 6; i++) assert.equal(await a.acquireConnection(1, 10), true);
    for (let i = 0; i < 4; i++) assert.equal(await b.acquireConnection(1, 10), true);
    assert.equal(await a.acquireConnection(1, 10), false);
    assert.equal(await b.acquireConnection(1, 10), false);
    assert.equal(await b.acquireConnection(2, 10), true, "another user's slots are apart");
    await a.releaseConnection(1);
    assert.equal(await b.acquireConnection(1, 10), true, "a released slot is free again");
    assert.equal(await a.acquireConnection(1, 10), false);
    await b.close();
    assert.equal(await a.acquireConnection(1, 10), true, "a closed node's slots are free");
  });

  test("a dead node's connection slots stop counting once it is dead", async (c) => {
    const [dead, b] = [await c.node(), await c.node()];
    for (let i = 0; i < 3; i++) assert.equal(await dead.acquireConnection(1, 3), true);
    assert.equal(await b.acquireConnection(1, 3), false);
    dead.abandon();
    await eventually(
      "slots freed",
      async () => await b.acquireConnection(1, 3),
      c.deadNodeBoundMs + 2000,
    );
    assert.equal(await b.acquireConnection(1, 3), true);
    assert.equal(await b.acquireConnection(1, 3), true);
    assert.equal(await b.acquireConnection(1, 3), false, "b's own three count");
  });
}

for (const kind of [...CLUSTER_KINDS, onRedisCluster(localCluster)]) busContract(kind);
stopAfterTests(localCluster);
