/**
 * Presence and typing across real nodes: friends logging in at the same moment, a friend in
 * their grace period, and typing indicators that end by themselves. Each kind of cluster
 * (memory; Redis, ignored without `REDIS_URL`) runs every test. (The grace across nodes is in
 * `cluster_test.ts`, which runs it on a Redis Cluster too.)
 */

import assert from "node:assert/strict";
import type { Frame, TestClient } from "./support/client.ts";
import { CLUSTER_KINDS, nodesTest, slowSubscribe } from "./support/cluster.ts";
import { eventually } from "./support/wait.ts";

const TRIALS = 25;
const PAIRS = Array.from(
  { length: TRIALS },
  (_, i) => [100 + 2 * i, 101 + 2 * i] as [number, number],
);

/** Whether `client`, from its `authenticated` frame and the presence frames after it, sees `other` online. */
function seesOnline(authenticated: Frame, client: TestClient, other: number): boolean {
  let online = (authenticated.online_friends as number[]).includes(other);
  for (const frame of client.frames) {
    if (frame.type === "presence" && frame.user_id === other) online = frame.status === "online";
  }
  return online;
}

for (const kind of CLUSTER_KINDS) {
  for (const nodeCount of [1, 2]) {
    nodesTest(
      kind,
      `two friends authenticating at the same moment each see the other online, and nothing precedes authenticated (${nodeCount} node(s), ${TRIALS} trials)`,
      { nodes: nodeCount, users: PAIRS.flat(), friends: PAIRS },
      async (nodes) => {
        const [nodeA, nodeB] = [nodes[0]!, nodes[nodes.length - 1]!];
        for (const [ua, ub] of PAIRS) {
          const [a, b] = await Promise.all([nodeA.connect(), nodeB.connect()]);
          const [ta, tb] = await Promise.all([nodeA.token(ua), nodeB.token(ub)]);
          a.send({ type: "authenticate", auth_token: ta });
          b.send({ type: "authenticate", auth_token: tb });
          const [authA, authB] = await Promise.all([a.next(), b.next()]);
          assert.equal(authA.type, "authenticated", `trial ${ua}: first frame of A`);
          assert.equal(authB.type, "authenticated", `trial ${ua}: first frame of B`);
          await eventually(
            `trial ${ua}-${ub}: each sees the other online`,
            () => seesOnline(authA, a, ub) && seesOnline(authB, b, ua),
          );
          await Promise.all([a.close(), b.close()]);
        }
      },
    );
  }

  nodesTest(
    kind,
    "authenticated counts a friend in their grace period as online",
    { env: { PRESENCE_GRACE_S: "3" } },
    async ([a, b]) => {
      const alice = await a!.connectAs(1);
      await alice.close();
      const carol = await b!.connect();
      carol.send({ type: "authenticate", auth_token: await b!.token(3) });
      assert.deepEqual((await carol.next("authenticated")).online_friends, [1]);
    },
  );

  nodesTest(
    kind,
    "typing true not renewed within TYPING_TIMEOUT_S reaches the friend on the other node as false",
    { env: { TYPING_TIMEOUT_S: "1" } },
    async ([a, b]) => {
      const bob = await b!.connectAs(2);
      const alice = await a!.connectAs(1);
      const sentAt = Date.now();
      alice.send({ type: "typing", recipient_user_id: 2, is_typing: true });
      assert.deepEqual(await bob.next("typing"), { type: "typing", user_id: 1, is_typing: true });
      assert.deepEqual(await bob.next("typing", 8000), {
        type: "typing",
        user_id: 1,
        is_typing: false,
      });
      assert.ok(Date.now() - sentAt >= 1000, "ended before the timeout");
      assert.deepEqual(await bob.drainFor(1500, "typing"), [], "ended once");
    },
  );

  nodesTest(
    kind,
    "typing ended by the typist is not ended again by the timeout",
    { env: { TYPING_TIMEOUT_S: "1" } },
    async ([a, b]) => {
      const bob = await b!.connectAs(2);
      const alice = await a!.connectAs(1);
      alice.send({ type: "typing", recipient_user_id: 2 });
      alice.send({ type: "typing", recipient_user_id: 2, is_typing: false });
      assert.equal((await bob.next("typing")).is_typing, true);
      assert.equal((await bob.next("typing")).is_typing, false);
      assert.deepEqual(await bob.drainFor(2000, "typing"), []);
    },
  );

  nodesTest(
    kind,
    "typing ends at once when the typist's last connection closes",
    { env: { TYPING_TIMEOUT_S: "60" } },
    async ([a, b]) => {
      const bob = await b!.connectAs(2);
      const alice = await a!.connectAs(1);
      alice.send({ type: "typing", recipient_user_id: 2 });
      assert.equal((await bob.next("typing")).is_typing, true);
      await alice.close();
      assert.deepEqual(await bob.next("typing", 5000), {
        type: "typing",
        user_id: 1,
        is_typing: false,
      });
    },
  );

  nodesTest(
    kind,
    "authenticated waits for the subscription: a frame the other node sends right after it arrives",
    { env: { NOTIFY_SECRET: "n" }, wrapBus: (bus) => slowSubscribe(bus, 400) },
    async ([a, b]) => {
      for (let i = 0; i < 3; i++) {
        const alice = await a!.connect();
        alice.send({ type: "authenticate", auth_token: await a!.token(1) });
        await alice.next("authenticated");
        const res = await fetch(`${b!.internalUrl}/notify`, {
          method: "POST",
          headers: { authorization: "Bearer n" },
          body: JSON.stringify({ user_ids: [1], event: { type: "probe", trial: i } }),
        });
        assert.equal(res.status, 202);
        await res.body?.cancel();
        assert.deepEqual(await alice.next("probe"), { type: "probe", trial: i });
        await alice.close();
        await a!.server.hub.settled();
      }
    },
  );
}
