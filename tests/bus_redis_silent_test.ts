/**
 * A Redis path that goes silent without closing (a black hole, `support/freezing_proxy.ts`)
 * between one node and Redis: the node must notice within seconds, say it is not ready, hold
 * a bounded backlog, and come back without re-sending anything. The other node talks to Redis
 * directly. Ignored when `REDIS_URL` is unset.
 */

import assert from "node:assert/strict";
import type { BusDelivery } from "../src/bus/bus.ts";
import { createLogger } from "../src/log.ts";
import { REDIS_URL, redisCluster, withNodes } from "./support/cluster.ts";
import { type FreezingProxy, startFreezingProxy } from "./support/freezing_proxy.ts";
import type { TestServer } from "./support/server.ts";
import { eventually, sleep } from "./support/wait.ts";
import { withoutLastSeen } from "./support/client.ts";

const ignore = REDIS_URL === undefined;
const suffix = ignore ? " (skipped: REDIS_URL unset)" : "";
/** Detection takes up to 3.5 s (PING every 1 s, 2.5 s deadline); generous for a loaded machine. */
const DETECT_MS = 15_000;
const RECOVER_MS = 20_000;

type Body = (env: {
  proxy: FreezingProxy;
  cluster: ReturnType<typeof redisCluster>;
  proxyUrl: string;
  events: string[];
}) => Promise<void>;

/**
 * A test on a Redis cluster (presence TTL `presenceTtlS`) and a proxy in front of its Redis.
 * The default TTL is far above detection + reconnect, as in production: no node is swept
 * meanwhile.
 */
function silentTest(name: string, body: Body, presenceTtlS = 10): void {
  Deno.test({
    name: name + suffix,
    ignore,
    async fn() {
      const url = new URL(REDIS_URL!);
      const proxy = startFreezingProxy({ hostname: url.hostname, port: Number(url.port || 6379) });
      const proxyUrl = `redis://127.0.0.1:${proxy.port}`;
      const cluster = redisCluster(REDIS_URL!, presenceTtlS);
      const events: string[] = [];
      try {
        await body({ proxy, cluster, proxyUrl, events });
      } finally {
        proxy.restore();
        await cluster.cleanup();
        await proxy.close();
      }
    },
  });
}

/** A logger keeping the event names, for the node behind the proxy. */
function eventLogger(events: string[]) {
  return createLogger("info", (line) => events.push(JSON.parse(line).event));
}

/** Publishes from `from` until `got` holds a frame with `n`, i.e. delivery works. */
async function deliveryWorks(
  from: { publish(d: BusDelivery): void },
  userId: number,
  got: BusDelivery[],
  timeoutMs: number,
): Promise<void> {
  const frame = JSON.stringify({ probe: crypto.randomUUID() });
  await eventually("delivery works", () => {
    from.publish({ userId, frame, droppable: false });
    return got.some((d) => d.frame === frame);
  }, timeoutMs);
}

silentTest(
  "a silent Redis path is found within seconds: not ready until it is back, then delivery resumes",
  async ({ proxy, cluster, proxyUrl, events }) => {
    const a = await cluster.nodeWith({ url: proxyUrl, logger: eventLogger(events) });
    const b = await cluster.node();
    const gotA: BusDelivery[] = [];
    const gotB: BusDelivery[] = [];
    a.onDelivery((d) => gotA.push(d));
    b.onDelivery((d) => gotB.push(d));
    await a.subscribe(1);
    await b.subscribe(2);
    await deliveryWorks(b, 1, gotA, 5000);
    assert.equal(a.isReady(), true);

    proxy.freeze();
    await eventually("a not ready", () => !a.isReady(), DETECT_MS);
    assert.equal(b.isReady(), true, "b's own path is fine");
    await sleep(3000); // reconnect attempts through the frozen path fail meanwhile
    assert.equal(a.isReady(), false);
    await a.subscribe(3); // while down: subscribed once back

    proxy.restore();
    await eventually("a ready again", () => a.isReady(), RECOVER_MS);
    await deliveryWorks(b, 1, gotA, 10_000);
    await deliveryWorks(b, 3, gotA, 10_000);
    await deliveryWorks(a, 2, gotB, 10_000);
    assert.deepEqual(
      events.filter((e) => e.startsWith("redis_")),
      ["redis_disconnected", "redis_reconnected"],
      "one line when the outage starts, one when it ends",
    );
  },
);

silentTest(
  "publishes into a silent path are bounded, counted failed at once, and never arrive late",
  async ({ proxy, cluster, proxyUrl }) => {
    let failed = 0;
    const a = await cluster.nodeWith({
      url: proxyUrl,
      maxPublishesInFlight: 100,
      onPublish: (ok) => void (ok || failed++),
    });
    const b = await cluster.node();
    const gotB: BusDelivery[] = [];
    b.onDelivery((d) => gotB.push(d));
    await b.subscribe(2);
    await deliveryWorks(a, 2, gotB, 5000);
    await sleep(500); // the probes' replies are in
    failed = 0;

    proxy.freeze();
    const pad = "x".repeat(4000);
    for (let i = 0; i < 50; i++) {
      a.publish({ userId: 2, frame: JSON.stringify({ stale: i, pad }), droppable: false });
    }
    await sleep(0);
    assert.equal(failed, 0, "under the bound, publishes wait for Redis");
    a.publish({ userId: 2, frame: JSON.stringify({ stale: "typing" }), droppable: true });
    await sleep(0);
    assert.equal(failed, 1, "past half the bound a droppable frame is dropped");
    for (let i = 50; i < 5050; i++) {
      a.publish({ userId: 2, frame: JSON.stringify({ stale: i, pad }), droppable: false });
    }
    await sleep(0);
    assert.ok(failed >= 4951, `past the bound, counted failed at once (${failed})`);

    await eventually("a not ready", () => !a.isReady(), DETECT_MS);
    // Longer than the 3.5 s a publish may take: what the frozen path still holds is stale.
    await sleep(5000);
    proxy.restore();
    await eventually("a ready again", () => a.isReady(), RECOVER_MS);
    assert.equal(failed, 5051, "every one of them was counted failed");
    await deliveryWorks(a, 2, gotB, 10_000);
    await sleep(1000);
    assert.deepEqual(
      gotB.filter((d) => d.frame.includes("stale")),
      [],
      "nothing published into the silent path arrives after the reconnect",
    );
  },
);

silentTest(
  "a publish Redis ran but whose reply was lost is delivered once, not again after the reconnect",
  async ({ proxy, cluster, proxyUrl }) => {
    const outcomes: boolean[] = [];
    const a = await cluster.nodeWith({ url: proxyUrl, onPublish: (ok) => outcomes.push(ok) });
    const b = await cluster.node();
    const gotB: BusDelivery[] = [];
    b.onDelivery((d) => gotB.push(d));
    await b.subscribe(2);
    await deliveryWorks(a, 2, gotB, 5000);
    await sleep(500); // the probes' replies are in

    proxy.freeze("replies"); // requests reach Redis; its replies are held
    outcomes.length = 0;
    a.publish({ userId: 2, frame: '{"once":true}', droppable: false });
    await eventually("b got it live", () => gotB.some((d) => d.frame === '{"once":true}'));
    await eventually("a not ready", () => !a.isReady(), DETECT_MS);
    assert.deepEqual(outcomes, [false], "its reply never came: counted failed");
    proxy.restore();
    await eventually("a ready again", () => a.isReady(), RECOVER_MS);
    await deliveryWorks(a, 2, gotB, 10_000);
    await sleep(1000);
    assert.equal(gotB.filter((d) => d.frame === '{"once":true}').length, 1, "delivered once");
  },
);

/** Two chat servers on one database, node A's Redis through `proxy`; users 1–2 friends. */
function twoNodeTest(
  name: string,
  presenceTtlS: number,
  body: (a: TestServer, b: TestServer, proxy: FreezingProxy) => Promise<void>,
): void {
  silentTest(name, ({ proxy, cluster, proxyUrl }) =>
    withNodes(
      (i) => i === 0 ? cluster.nodeWith({ url: proxyUrl }) : cluster.node(),
      { users: [1, 2], friends: [[1, 2]] },
      async ([a, b]) => {
        try {
          await body(a!, b!, proxy);
        } finally {
          proxy.restore(); // before the nodes close: a frozen path would hold their goodbyes
        }
      },
    ), presenceTtlS);
}

/** Alice (1) on node A, then Bob (2) on node B, both settled; Alice has seen Bob come online. */
async function aliceAndBob(a: TestServer, b: TestServer) {
  const alice = await a.connectAs(1);
  const bob = await b.connectAs(2);
  await a.server.hub.settled();
  await b.server.hub.settled();
  assert.equal((await alice.next("presence")).status, "online", "bob came online");
  return { alice, bob };
}

twoNodeTest(
  "a node whose Redis path goes silent answers /readyz 503, then chats across nodes again",
  10,
  async (a, b, proxy) => {
    const { alice, bob } = await aliceAndBob(a, b);
    const readyz = async () => {
      const res = await fetch(`${a.internalUrl}/readyz`);
      await res.body?.cancel();
      return res.status;
    };
    assert.equal(await readyz(), 200);

    proxy.freeze();
    await eventually("/readyz 503", async () => (await readyz()) === 503, DETECT_MS);
    proxy.restore();
    await eventually("/readyz 200", async () => (await readyz()) === 200, RECOVER_MS);
    bob.send({ type: "chat_message", recipient_user_id: 1, message_text: "after" });
    const sent = (await bob.next("message_sent")).data as Record<string, unknown>;
    assert.deepEqual(await alice.next("chat_message"), { type: "chat_message", ...sent, seq: 1 });
    assert.deepEqual(
      await alice.drainFor(300, "presence"),
      [],
      "no flicker: the node was back within its TTL",
    );
    assert.deepEqual(await bob.drainFor(0, "presence"), []);
  },
);

twoNodeTest(
  "a node swept while its Redis path was silent announces its users online again once back",
  1,
  async (a, b, proxy) => {
    const { bob } = await aliceAndBob(a, b);
    proxy.freeze();
    // A TTL of 1 s is shorter than detection: node B sweeps node A first.
    assert.deepEqual(withoutLastSeen(await bob.next("presence", DETECT_MS)), {
      type: "presence",
      user_id: 1,
      status: "offline",
    });
    await eventually("node A found the silence", () => !a.bus.isReady(), DETECT_MS);
    proxy.restore();
    assert.deepEqual(await bob.next("presence", RECOVER_MS), {
      type: "presence",
      user_id: 1,
      status: "online",
    });
  },
);
