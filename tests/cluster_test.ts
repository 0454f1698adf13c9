/**
 * Two real chat servers as two nodes of one cluster: one database, and one memory cluster, two
 * Redis buses on one Redis (ignored when `REDIS_URL` is unset), or two on a local Redis Cluster
 * of 3 primaries and 3 replicas that this file starts and stops. Users 1–2 and 1–3 are
 * friends. Delivery, multi-device, typing, presence (with its grace), `/notify`,
 * `/disconnect`, the connection cap over the cluster, and a node that dies.
 */

import assert from "node:assert/strict";
import { CLUSTER_KINDS, type ClusterKind, nodesTest, type TestBus } from "./support/cluster.ts";
import { type TestClient, withoutLastSeen } from "./support/client.ts";
import { onRedisCluster, startLocalRedisCluster, stopAfterTests } from "./support/redis_cluster.ts";
import type { TestServer } from "./support/server.ts";
import { eventually, sleep } from "./support/wait.ts";

const NOTIFY_SECRET = "cluster-notify-secret";

/** Two nodes; a short presence TTL, so that a dead node is noticed quickly. */
function twoNodeTest(
  kind: ClusterKind,
  name: string,
  body: (a: TestServer, b: TestServer, deadNodeBoundMs: number) => Promise<void>,
): void {
  nodesTest(
    kind,
    name,
    { env: { NOTIFY_SECRET }, presenceTtlS: 1, users: [1, 2, 3], friends: [[1, 2], [3, 1]] },
    ([a, b], _db, cluster) => body(a!, b!, cluster.deadNodeBoundMs),
  );
}

/** Connects on `node` and waits until the node's presence work for it is done. */
async function connectSettled(node: TestServer, userId: number): Promise<TestClient> {
  const client = await node.connectAs(userId);
  await node.server.hub.settled();
  return client;
}

/** Bob (on node B) sees alice (on node A) come online, then alice's one connection closes. */
async function aliceComesAndGoes(a: TestServer, b: TestServer): Promise<TestClient> {
  const bob = await b.connectAs(2);
  const alice = await a.connectAs(1);
  assert.equal((await bob.next("presence")).status, "online");
  await alice.close();
  return bob;
}

const localCluster = await startLocalRedisCluster();

for (const kind of [...CLUSTER_KINDS, onRedisCluster(localCluster)]) {
  twoNodeTest(
    kind,
    "a message from node A reaches the friend and the sender's other device on node B",
    async (a, b) => {
      const bob = await connectSettled(b, 2);
      const aliceLaptop = await connectSettled(b, 1);
      const alicePhone = await connectSettled(a, 1);
      alicePhone.send({ type: "chat_message", recipient_user_id: 2, message_text: "across" });
      const sent = (await alicePhone.next("message_sent")).data as Record<string, unknown>;
      // update 1 of each user's sequence
      assert.deepEqual(await bob.next("chat_message"), { type: "chat_message", ...sent, seq: 1 });
      assert.deepEqual(await aliceLaptop.next("chat_message"), {
        type: "chat_message",
        ...sent,
        seq: 1,
      });
      assert.deepEqual(await bob.drainFor(100, "chat_message"), [], "delivered once");
      assert.deepEqual(await alicePhone.drainFor(0, "chat_message"), [], "not echoed to sender");
    },
  );

  twoNodeTest(kind, "typing on node A reaches the friend on node B", async (a, b) => {
    const bob = await connectSettled(b, 2);
    const alice = await connectSettled(a, 1);
    alice.send({ type: "typing", recipient_user_id: 2 });
    assert.deepEqual(await bob.next("typing"), { type: "typing", user_id: 1, is_typing: true });
  });

  twoNodeTest(
    kind,
    "presence crosses nodes, and a user on both nodes goes offline only with the last device",
    async (a, b) => {
      const bob = await connectSettled(b, 2);
      const alicePhone = await a.connect();
      alicePhone.send({ type: "authenticate", auth_token: await a.token(1) });
      assert.deepEqual((await alicePhone.next("authenticated")).online_friends, [2]);
      assert.deepEqual(await bob.next("presence"), {
        type: "presence",
        user_id: 1,
        status: "online",
      });
      const aliceLaptop = await connectSettled(b, 1);
      await alicePhone.close();
      await a.server.hub.settled();
      assert.deepEqual(await bob.drainFor(200, "presence"), [], "still online on node B");
      await aliceLaptop.close();
      assert.deepEqual(withoutLastSeen(await bob.next("presence")), {
        type: "presence",
        user_id: 1,
        status: "offline",
      });
    },
  );

  twoNodeTest(kind, "/notify on node A reaches a user on node B", async (a, b) => {
    const bob = await connectSettled(b, 2);
    const event = { type: "battle_invitation", from_user_id: 1, battle_id: 9 };
    const res = await fetch(`${a.internalUrl}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${NOTIFY_SECRET}`, "content-type": "application/json" },
      body: JSON.stringify({ user_ids: [2], event }),
    });
    assert.equal(res.status, 202);
    await res.body?.cancel();
    assert.deepEqual(await bob.next("battle_invitation"), event);
  });

  twoNodeTest(
    kind,
    "a node whose heartbeat stops takes its users offline for friends on the other node",
    async (a, b, deadNodeBoundMs) => {
      const bob = await connectSettled(b, 2);
      await connectSettled(a, 1);
      await connectSettled(a, 3);
      assert.equal((await bob.next("presence")).status, "online");
      const diedAt = Date.now();
      (a.bus as TestBus).abandon();
      const offline = await bob.next("presence", deadNodeBoundMs + 2000);
      assert.deepEqual(withoutLastSeen(offline), {
        type: "presence",
        user_id: 1,
        status: "offline",
      });
      assert.ok(Date.now() - diedAt <= deadNodeBoundMs + 1000, "within TTL + one sweep");
      assert.deepEqual(await bob.drainFor(200, "presence"), [], "user 3 is not bob's friend");
    },
  );

  nodesTest(
    kind,
    "POST /disconnect on one node closes every connection of the user on both nodes",
    { env: { NOTIFY_SECRET } },
    async ([a, b]) => {
      const onA = await a!.connectAs(1);
      const onB = await b!.connectAs(1);
      const bob = await b!.connectAs(2);
      const res = await fetch(`${a!.internalUrl}/disconnect`, {
        method: "POST",
        headers: { authorization: `Bearer ${NOTIFY_SECRET}` },
        body: JSON.stringify({ user_ids: [1, 1], reason: "banned" }),
      });
      assert.equal(res.status, 202);
      assert.deepEqual(await res.json(), { users: 1 });
      for (const client of [onA, onB]) {
        assert.deepEqual(await client.next("session_expired"), {
          type: "session_expired",
          reason: "banned",
        });
        assert.equal(await client.closedWith(), 1008);
      }
      bob.send({ type: "ping" });
      assert.deepEqual(await bob.next("pong"), { type: "pong" });
    },
  );

  nodesTest(
    kind,
    "the 11th connection of a user spread over two nodes is refused, and a freed slot is reusable",
    {},
    async ([a, b]) => {
      const clients = [];
      for (let i = 0; i < 10; i++) clients.push(await (i % 2 === 0 ? a! : b!).connectAs(1));
      for (const node of [a!, b!]) {
        const extra = await node.connect();
        extra.send({ type: "authenticate", auth_token: await node.token(1) });
        assert.equal((await extra.next("error")).code, "too_many_connections");
        assert.equal(await extra.closedWith(), 1013);
      }
      await clients[0]!.close();
      let again;
      for (let i = 0; i < 50 && again === undefined; i++) {
        // The slot is given back when the server has seen the close.
        const attempt = await b!.connect();
        attempt.send({ type: "authenticate", auth_token: await b!.token(1) });
        const answer = await attempt.next(["authenticated", "error"]);
        if (answer.type === "authenticated") again = attempt;
        else await sleep(100);
      }
      assert.ok(again !== undefined, "the freed slot was never available again");
    },
  );

  // Node A's users 2..31 are friends of user 1 (on node B); user 32 too, appearing offline.
  const leavers = Array.from({ length: 30 }, (_, i) => i + 2);
  nodesTest(
    kind,
    "a node's shutdown tells friends elsewhere that each of its users went offline, with when, and stores it",
    {
      // A long grace: only the shutdown ends it.
      env: { PRESENCE_GRACE_S: "60" },
      users: [1, ...leavers, 32],
      friends: [...leavers, 32].map((id) => [1, id] as [number, number]),
    },
    async ([a, b], db) => {
      const bob = await connectSettled(b!, 1);
      const hidden = await connectSettled(a!, 32);
      hidden.send({ type: "settings", appear_offline: true });
      await hidden.next("settings_updated");
      for (const id of leavers) await connectSettled(a!, id);
      const online = await bob.drainFor(500, "presence");
      assert.equal(online.filter((f) => f.status === "online").length, leavers.length + 1);
      const stoppedAt = Date.now();
      await a!.server.shutdown();
      const frames = await bob.drainFor(1000, "presence");
      assert.deepEqual(
        frames.map((f) => [f.user_id, f.status]).sort((x, y) => Number(x[0]) - Number(y[0])),
        leavers.map((id) => [id, "offline"]),
        "one offline for every visible user of the stopped node, none for the hidden one",
      );
      for (const frame of frames) {
        const at = Date.parse(String(frame.last_seen_at));
        assert.ok(at >= stoppedAt - 5000 && at <= Date.now(), `last seen ${frame.last_seen_at}`);
      }
      const stored = async () =>
        (await db.sql<{ user_id: string; last_seen_at: Date }[]>`
          select user_id::text, last_seen_at from chat_user_settings
          where user_id = any(${db.sql.array(leavers)}::bigint[]) and last_seen_at is not null
          order by chat_user_settings.user_id`)
          .map((r) => [Number(r.user_id), r.last_seen_at.toISOString()]);
      const expected = frames.map((f) => [f.user_id, f.last_seen_at])
        .sort((x, y) => Number(x[0]) - Number(y[0]));
      let rows: unknown[] = [];
      await eventually(
        () => `last seen stored: ${JSON.stringify(rows)}, expected ${JSON.stringify(expected)}`,
        async () => JSON.stringify(rows = await stored()) === JSON.stringify(expected),
      );
    },
  );

  /** Bob on node B, alice on node A comes and goes, with a 2 s grace: `body` watches bob. */
  const graceTest = (name: string, body: (bob: TestClient, b: TestServer) => Promise<void>) =>
    nodesTest(kind, name, { env: { PRESENCE_GRACE_S: "2" } }, async ([a, b]) => {
      await body(await aliceComesAndGoes(a!, b!), b!);
    });

  graceTest(
    "a reconnect within the grace, on the other node, sends friends no presence frame",
    async (bob, b) => {
      await sleep(300);
      const again = await b.connectAs(1);
      assert.deepEqual(await bob.drainFor(3000, "presence"), [], "no offline, no online");
      await again.close();
    },
  );

  graceTest(
    "a real departure reaches friends on the other node as offline after the grace, not before",
    async (bob) => {
      // Timers never fire early: nothing can arrive in the first 1.5 s of a 2 s grace.
      assert.deepEqual(await bob.drainFor(1500, "presence"), [], "offline before the grace ended");
      assert.deepEqual(withoutLastSeen(await bob.next("presence", 8000)), {
        type: "presence",
        user_id: 1,
        status: "offline",
      });
    },
  );
}

stopAfterTests(localCluster);
