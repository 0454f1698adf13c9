/**
 * The events webhook against a real server, real Postgres and a receiver the
 * test starts (`Deno.serve` on port 0): `message.unseen` and `report.created`,
 * coalescing, what suppresses an event, retries and drops, a hanging
 * receiver, two nodes, a restart, a node SIGKILLed mid-batch. The accepting receiver is the reference
 * one of `examples/`, so every delivered batch also proves its signature.
 */

import assert from "node:assert/strict";
import { eventsReceiver } from "../examples/events_receiver.ts";
import { signBody } from "../src/webhook_signature.ts";
import { connectAs, TEST_SECRET, type TestClient } from "./support/client.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { parseMetrics } from "./support/metrics.ts";
import { type ServerProcess, spawnServer } from "./support/process.ts";
import { startTestServer, type TestServer, withTestServer } from "./support/server.ts";
import { eventually } from "./support/wait.ts";

const EVENTS_SECRET = "events-secret-for-the-tests";
type Event = Record<string, unknown> & { id: string; type: string };

/** A webhook receiver on port 0: it keeps every batch it was sent and answers as `mode` says. */
class Receiver {
  /** Every batch posted, accepted or not, in arrival order. */
  readonly batches: { events: Event[]; at: number; status: number }[] = [];
  /** Events the reference receiver accepted (each id once). */
  readonly accepted: Event[] = [];
  mode: "accept" | "fail" | "hang";
  readonly #released = Promise.withResolvers<void>();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  constructor(mode: "accept" | "fail" | "hang") {
    this.mode = mode;
    const reference = eventsReceiver({
      secret: EVENTS_SECRET,
      onEvent: (event) => {
        this.accepted.push(event as Event);
      },
    });
    this.#server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
      const raw = await req.clone().text();
      const batch = { events: (JSON.parse(raw) as { events: Event[] }).events, at: Date.now() };
      if (this.mode === "hang") {
        this.batches.push({ ...batch, status: 0 });
        await this.#released.promise;
        return new Response("released", { status: 503 });
      }
      const response = this.mode === "fail"
        ? new Response("down", { status: 500 })
        : await reference(req);
      this.batches.push({ ...batch, status: response.status });
      return response;
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/events`;
  }

  /** Ids of every event posted, accepted or not, in order. */
  get postedIds(): string[] {
    return this.batches.flatMap((b) => b.events.map((e) => e.id));
  }

  async close(): Promise<void> {
    this.#released.resolve();
    await this.#server.shutdown();
  }
}

/** Settings for fast tests: a 1 s unseen delay, a 2 s statement timeout (the pollers lag 3 s). */
function eventsEnv(receiver: Receiver, extra: Record<string, string> = {}): Record<string, string> {
  return {
    EVENTS_URL: receiver.url,
    EVENTS_SECRET,
    UNSEEN_DELAY_S: "1",
    EVENTS_BATCH_MS: "200",
    DB_STATEMENT_TIMEOUT_MS: "2000",
    ...extra,
  };
}

async function withReceiver(
  mode: "accept" | "fail" | "hang",
  body: (receiver: Receiver) => Promise<void>,
): Promise<void> {
  const receiver = new Receiver(mode);
  try {
    await body(receiver);
  } finally {
    await receiver.close();
  }
}

/** Sends a chat message and returns its id once it is acknowledged. */
async function send(client: TestClient, to: number, text: string): Promise<number> {
  client.send({ type: "chat_message", recipient_user_id: to, message_text: text });
  const sent = await client.next("message_sent");
  return Number((sent.data as { message_id: number }).message_id);
}

async function outboxSize(t: { db: TestDatabase }): Promise<number> {
  const [row] = await t.db.sql<{ n: number }[]>`select count(*)::int as n from chat_events`;
  return row!.n;
}

async function metric(t: TestServer, name: string): Promise<number> {
  return parseMetrics(await t.server.metrics.render()).get(name) ?? 0;
}

const unseenOf = (receiver: Receiver, recipient: number) =>
  receiver.accepted.filter((e) => e.type === "message.unseen" && e.recipient_user_id === recipient);

Deno.test("three messages to an offline friend become one signed message.unseen with count 3, the last message's preview and the unread total", async () => {
  await withReceiver("accept", async (receiver) => {
    await withTestServer(
      { users: [1, 2], friends: [[1, 2]], env: eventsEnv(receiver) },
      async (t) => {
        const alice = await t.connectAs(1);
        await send(alice, 2, "one");
        await send(alice, 2, "two");
        const long = "🐉".repeat(60) + "x".repeat(60); // 120 code points, 180 UTF-16 units
        const last = await send(alice, 2, long);
        await eventually("a message.unseen for 2", () => unseenOf(receiver, 2).length > 0, 15_000);
        await eventually("the outbox emptied", async () => await outboxSize(t) === 0);
        const [event, ...more] = unseenOf(receiver, 2);
        assert.deepEqual(more, [], "one event for the three messages");
        assert.deepEqual({ ...event, id: undefined }, {
          id: undefined,
          type: "message.unseen",
          recipient_user_id: 2,
          sender_user_id: 1,
          count: 3,
          last_message_id: last,
          preview: Array.from(long).slice(0, 100).join(""),
          unread_total: 3,
        });
        assert.match(event!.id, /^[0-9a-f-]{36}$/);
        assert.equal(await metric(t, 'chat_events_enqueued_total{type="message.unseen"}'), 1);
        assert.equal(await metric(t, "chat_events_sent_total"), 1);
      },
    );
  });
});

Deno.test("a device that reports delivered prevents message.unseen; a connected device that never does, does not", async () => {
  await withReceiver("accept", async (receiver) => {
    await withTestServer(
      { users: [1, 2, 3, 4], friends: [[1, 2], [1, 3], [4, 3]], env: eventsEnv(receiver) },
      async (t) => {
        const alice = await t.connectAs(1);
        const bob = await t.connectAs(2); // shows what arrives
        const carol = await t.connectAs(3); // connected, never reports delivered
        const shown = await send(alice, 2, "to bob");
        bob.send({ type: "delivered", message_id: (await bob.next("chat_message")).message_id });
        assert.equal((await alice.next("delivered")).message_id, shown);
        await send(alice, 3, "to carol");
        await carol.next("chat_message");
        // Sent last: once its event is in, every earlier message has been looked at.
        const dave = await t.connectAs(4);
        await send(dave, 3, "from dave");
        await eventually("dave's message.unseen", () => {
          return receiver.accepted.some((e) => e.sender_user_id === 4);
        }, 15_000);
        await eventually("the outbox emptied", async () => await outboxSize(t) === 0);
        const events = receiver.accepted.map((e) => [e.recipient_user_id, e.sender_user_id]);
        assert.deepEqual(events.sort(), [[3, 1], [3, 4]], "nothing for the message bob was shown");
      },
    );
  });
});

Deno.test("a mute of the sender and do-not-disturb suppress message.unseen until their time", async () => {
  await withReceiver("accept", async (receiver) => {
    await withTestServer(
      { users: [1, 2, 3, 4], friends: [[1, 2], [1, 3], [4, 2]], env: eventsEnv(receiver) },
      async (t) => {
        await t.db.sql`
          insert into chat_mutes (user_id, friend_user_id, until)
          values (2, 1, now() + interval '1 hour')`;
        await t.db.sql`
          insert into chat_user_settings (user_id, dnd_until) values (3, now() + interval '1 hour')`;
        const alice = await t.connectAs(1);
        await send(alice, 2, "to bob, who muted alice");
        await send(alice, 3, "to carol, in do-not-disturb");
        const dave = await t.connectAs(4);
        await send(dave, 2, "to bob from dave, not muted");
        await eventually("dave's message.unseen", () => {
          return receiver.accepted.some((e) => e.sender_user_id === 4);
        }, 15_000);
        await eventually("the outbox emptied", async () => await outboxSize(t) === 0);
        const events = receiver.accepted.map((e) => [e.recipient_user_id, e.sender_user_id]);
        assert.deepEqual(events, [[2, 4]]);
        // An expired mute silences nothing.
        await t.db.sql`update chat_mutes set until = now() - interval '1 second'`;
        await send(alice, 2, "after the mute");
        await eventually(
          "alice's message.unseen",
          () => unseenOf(receiver, 2).length === 2,
          15_000,
        );
      },
    );
  });
});

Deno.test("report.created carries the report as stored, with a stable id", async () => {
  await withReceiver("accept", async (receiver) => {
    await withTestServer(
      { users: [1, 2], friends: [[1, 2]], env: eventsEnv(receiver) },
      async (t) => {
        const snapshot = [{ message_id: 977, sender_user_id: 1, message_text: "buy gold" }];
        const [report] = await t.db.sql<{ report_id: string }[]>`
          insert into chat_reports (reporter_user_id, reported_user_id, message_id, reason, note,
                                    snapshot)
          values (2, 1, 977, 'spam', 'again', ${t.db.sql.json(snapshot)})
          returning report_id::text`;
        await eventually("report.created", () => receiver.accepted.length > 0, 15_000);
        assert.deepEqual(receiver.accepted, [{
          id: `report-${report!.report_id}`,
          type: "report.created",
          report_id: Number(report!.report_id),
          reporter_user_id: 2,
          reported_user_id: 1,
          message_id: 977,
          reason: "spam",
          note: "again",
          snapshot,
        }]);
      },
    );
  });
});

Deno.test("a failing receiver gets the same events again after growing intervals, then they are dropped and counted", async () => {
  await withReceiver("fail", async (receiver) => {
    await withTestServer(
      { users: [1, 2], friends: [[1, 2]], env: eventsEnv(receiver, { EVENTS_RETRY_FOR_S: "3" }) },
      async (t) => {
        await t.db.sql`
          insert into chat_reports (reporter_user_id, reported_user_id, message_id, reason, snapshot)
          values (2, 1, 5, 'spam', '[]')`;
        await eventually("the event dropped", async () => {
          return await metric(t, "chat_events_dropped_total") === 1;
        }, 20_000);
        assert.equal(await outboxSize(t), 0, "nothing left to send");
        const attempts = receiver.batches;
        assert.ok(attempts.length >= 2, `retried: ${attempts.length} attempts`);
        assert.ok(attempts.every((b) => b.status === 500 && b.events.length === 1));
        assert.deepEqual(new Set(receiver.postedIds).size, 1, "the same id in every attempt");
        // The n-th retry waits at least half of 2^(n-1) s (backoff with equal jitter).
        for (let n = 1; n < attempts.length; n++) {
          const gap = attempts[n]!.at - attempts[n - 1]!.at;
          assert.ok(gap >= 500 * 2 ** (n - 1) - 50, `retry ${n} came after ${gap} ms`);
        }
        assert.equal(await metric(t, "chat_events_retried_total"), attempts.length - 1);
        assert.equal(await metric(t, "chat_events_sent_total"), 0);
      },
    );
  });
});

Deno.test("a receiver that hangs does not hold up chat: messages are acknowledged while a batch waits", async () => {
  await withReceiver("hang", async (receiver) => {
    await withTestServer(
      { users: [1, 2, 3], friends: [[1, 2], [1, 3]], env: eventsEnv(receiver) },
      async (t) => {
        const alice = await t.connectAs(1);
        await send(alice, 2, "unseen");
        await eventually("a batch hanging", () => receiver.batches.length > 0, 15_000);
        const carol = await t.connectAs(3);
        for (let i = 0; i < 15; i++) {
          alice.send({ type: "chat_message", recipient_user_id: 3, message_text: `m${i}` });
        }
        for (let i = 0; i < 15; i++) await alice.next("message_sent");
        for (let i = 0; i < 15; i++) await carol.next("chat_message");
        assert.equal(receiver.batches.length, 1, "the batch still hangs");
      },
    );
  });
});

Deno.test("two nodes send each event once, in batches of at most EVENTS_BATCH_MAX", async () => {
  const db = await createTestDatabase();
  try {
    await withReceiver("accept", async (receiver) => {
      const env = eventsEnv(receiver, { EVENTS_BATCH_MAX: "4" });
      const a = await startTestServer({ db, users: [1, 2, 3], friends: [[1, 2]], env });
      const b = await startTestServer({ db, env });
      try {
        const alice = await a.connectAs(1);
        await db.sql`
          insert into chat_reports (reporter_user_id, reported_user_id, message_id, reason, snapshot)
          select 2, 1, n, 'spam', '[]' from generate_series(1, 30) n`;
        await send(alice, 2, "unseen");
        await eventually("31 events", () => receiver.accepted.length >= 31, 20_000);
        await eventually("the outbox emptied", async () => await outboxSize(a) === 0);
        const ids = receiver.postedIds;
        assert.equal(ids.length, 31, "no event posted twice");
        assert.equal(new Set(ids).size, 31);
        assert.ok(receiver.batches.every((batch) => batch.events.length <= 4));
        const sent = await metric(a, "chat_events_sent_total") +
          await metric(b, "chat_events_sent_total");
        assert.equal(sent, 31);
      } finally {
        await b.close();
        await a.close();
      }
    });
  } finally {
    await db.drop();
  }
});

Deno.test("events pending when a node stops, and messages it never looked at, are sent by the next node with the same ids", async () => {
  const db = await createTestDatabase();
  try {
    await withReceiver("hang", async (receiver) => {
      const env = eventsEnv(receiver);
      const a = await startTestServer({ db, users: [1, 2, 3], friends: [[1, 2], [1, 3]], env });
      let first: number;
      let second: number;
      try {
        const alice = await a.connectAs(1);
        first = await send(alice, 2, "first");
        await eventually("a batch in flight", () => receiver.batches.length > 0, 15_000);
        second = await send(alice, 3, "second"); // not looked at before the node stops
      } finally {
        await a.close();
      }
      const hung = receiver.postedIds;
      receiver.mode = "accept";
      await withTestServer({ db, env }, async (b) => {
        await eventually("both events", () => receiver.accepted.length >= 2, 15_000);
        await eventually("the outbox emptied", async () => await outboxSize(b) === 0);
      });
      const byRecipient = new Map(receiver.accepted.map((e) => [e.recipient_user_id, e]));
      assert.equal(byRecipient.get(2)?.last_message_id, first);
      assert.equal(byRecipient.get(3)?.last_message_id, second);
      assert.deepEqual(hung, [byRecipient.get(2)!.id], "the batch in flight went again, same id");
    });
  } finally {
    await db.drop();
  }
});

Deno.test("events pending while a node is SIGKILLed mid-batch all arrive, with their ids, once a new process runs on the same database", async () => {
  const db = await createTestDatabase();
  let node: ServerProcess | undefined;
  try {
    await withReceiver("fail", async (receiver) => {
      const env = {
        PATH: Deno.env.get("PATH") ?? "",
        AUTH_SECRET: TEST_SECRET,
        DATABASE_URL: db.url,
        ...eventsEnv(receiver),
      };
      node = await spawnServer(env);
      // Alice writes to 20 friends who stay offline: one message each, so one event each.
      const recipients = Array.from({ length: 20 }, (_, i) => i + 2);
      await db.seed({ users: [1, ...recipients], friends: recipients.map((r) => [1, r]) });
      const alice = await connectAs(`ws://127.0.0.1:${node.publicPort}/ws`, 1);
      const sent = new Map<number, number>();
      const write = async (to: number[]) => {
        for (const r of to) sent.set(r, await send(alice, r, `to ${r}`));
      };
      // The receiver fails: the first events are posted, refused with 500 and rescheduled.
      await write(recipients.slice(0, 10));
      await eventually(
        "two refused attempts",
        () => receiver.batches.filter((b) => b.status === 500).length >= 2,
        20_000,
      );
      // Then it hangs: a batch is in flight (its rows claimed) when the node is killed, more
      // messages are due to become events, and the newest were never looked at.
      receiver.mode = "hang";
      await write(recipients.slice(10, 15));
      await eventually(
        "a batch in flight",
        () => receiver.batches.some((b) => b.status === 0),
        20_000,
      );
      await write(recipients.slice(15));
      assert.notEqual(await node.stop("SIGKILL"), 0);
      await alice.closedWith();
      const postedBefore = new Set(receiver.postedIds);
      const inFlight = receiver.batches.filter((b) => b.status === 0).flatMap((b) => b.events);
      assert.ok(inFlight.length > 0);
      assert.ok(await outboxSize({ db }) > 0, "events pending at the kill");

      receiver.mode = "accept";
      node = await spawnServer(env);
      await eventually(
        () => `an event for each of the 20 messages: ${receiver.accepted.length} so far`,
        () => receiver.accepted.filter((e) => e.type === "message.unseen").length >= 20,
        30_000,
      );
      await eventually("the outbox emptied", async () => await outboxSize({ db }) === 0);
      // None lost, none doubled: one event per message (the receiver deduplicates by id).
      const accepted = receiver.accepted.filter((e) => e.type === "message.unseen");
      assert.deepEqual(
        accepted.map((e) => [e.recipient_user_id, e.last_message_id, e.count]).sort((a, b) =>
          Number(a[0]) - Number(b[0])
        ),
        recipients.map((r) => [r, sent.get(r), 1]),
      );
      // Every event posted before the kill, refused or in flight, came again with its id.
      const ids = new Set(accepted.map((e) => e.id));
      assert.deepEqual([...postedBefore].filter((id) => !ids.has(id)), []);
      for (const event of inFlight) {
        assert.deepEqual(
          accepted.find((e) => e.id === event.id),
          event,
          "the batch in flight went again, the same bodies",
        );
      }
    });
  } finally {
    try {
      await node?.stop("SIGKILL");
    } catch { /* stopped by the test */ }
    await db.drop();
  }
});

Deno.test("the reference receiver refuses a bad signature and a stale timestamp, and hands on a repeated id once", async () => {
  const handled: unknown[] = [];
  const now = 1_764_841_200_000;
  const receive = eventsReceiver({
    secret: EVENTS_SECRET,
    onEvent: (event) => void handled.push(event),
    now: () => now,
  });
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(EVENTS_SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const post = async (body: string, timestamp: number, signed = body) =>
    (await receive(
      new Request("http://receiver/events", {
        method: "POST",
        body,
        headers: {
          "x-chat-timestamp": String(timestamp),
          "x-chat-signature": await signBody(key, timestamp, signed),
        },
      }),
    )).status;
  const body = JSON.stringify({ time_ms: now, events: [{ id: "e1", type: "report.created" }] });
  const at = now / 1000;
  assert.equal(await post(body, at, body.replace("e1", "e2")), 401, "tampered body");
  assert.equal(await post(body, at - 301), 401, "stale timestamp");
  assert.equal(handled.length, 0);
  assert.equal(await post(body, at), 200);
  assert.equal(await post(body, at + 5), 200, "a retry is acknowledged");
  assert.deepEqual(handled, [{ id: "e1", type: "report.created" }]);
});
