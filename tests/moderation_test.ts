/**
 * The moderation hook (docs/protocol.md, "Moderation hook") on a real server
 * with a fake hook endpoint the test starts: what the hook is sent and how
 * it is signed, what each answer and each failure does to a message, the
 * order of a sender's messages when the hook answers out of order, the
 * in-flight bound, retries, `/notify`, metrics and the log.
 */

import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { HttpModerator } from "../src/moderation/mod.ts";
import { ServerMetrics } from "../src/metrics.ts";
import { answers, type FakeHook, startFakeHook } from "./support/fake_hook.ts";
import type { TestClient } from "./support/client.ts";
import { parseMetrics } from "./support/metrics.ts";
import {
  type MemoryTestServer,
  startMemoryServer,
  startTestServer,
  type TestServer,
  type TestServerOptions,
} from "./support/server.ts";
import { eventually } from "./support/wait.ts";

const HOOK_SECRET = "moderation-hook-secret-for-tests-0123456789";
const NOTIFY_SECRET = "notify-secret-for-moderation-tests";

/** Users 1 and 2 are friends; the server checks every message with a fresh fake hook. */
async function withHook(
  env: Record<string, string>,
  body: (t: TestServer, hook: FakeHook) => Promise<void>,
  options: TestServerOptions = {},
): Promise<void> {
  const hook = startFakeHook(HOOK_SECRET);
  try {
    const t = await startTestServer({
      users: [1, 2, 3],
      friends: [[1, 2]],
      ...options,
      env: { MODERATION_URL: hook.url, MODERATION_SECRET: HOOK_SECRET, ...options.env, ...env },
    });
    try {
      await body(t, hook);
    } finally {
      await t.close();
    }
  } finally {
    await hook.close();
  }
}

/** A promise the test resolves when it wants (a hook answer held back). */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => open = resolve);
  return { opened, open };
}

/** The text of the next `message_sent` of `client`: what was stored. */
async function sentText(client: TestClient): Promise<string> {
  return ((await client.next("message_sent")).data as { message_text: string }).message_text;
}

async function metricsOf(t: { internalUrl: string }): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`${t.internalUrl}/metrics`)).text());
}

async function rowsOf(t: TestServer) {
  const rows = await t.db.sql<{ message_text: string; moderation: string | null }[]>`
    select message_text, moderation from messages order by message_id`;
  return rows.map(({ message_text, moderation }) => ({ message_text, moderation }));
}

Deno.test("an allowed message is stored as sent; the hook gets a signed call with the message and no token", async () => {
  await withHook({}, async (t, hook) => {
    const a = await t.connectAs(1);
    const b = await t.connectAs(2);
    const before = Math.floor(Date.now() / 1000);
    a.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: " hello ",
      client_message_id: "c1",
    });
    const sent = await a.next("message_sent");
    assert.equal((sent.data as { message_text: string }).message_text, "hello");
    assert.equal((await b.next("chat_message")).message_text, "hello");
    assert.equal(hook.calls.length, 1);
    const call = hook.calls[0]!;
    assert.ok(call.signed, "the signature verifies with MODERATION_SECRET");
    assert.ok(Math.abs(Number(call.timestamp) - before) <= 5, `timestamp ${call.timestamp}`);
    assert.deepEqual(call.body, {
      kind: "new",
      sender_user_id: 1,
      recipient_user_id: 2,
      message_text: "hello",
      client_message_id: "c1",
    });
    assert.ok(!call.raw.includes("auth") && !call.raw.includes(HOOK_SECRET));
    assert.deepEqual(await rowsOf(t), [{ message_text: "hello", moderation: null }]);
    const m = await metricsOf(t);
    assert.equal(m.get('chat_moderation_outcomes_total{outcome="allowed"}'), 1);
    assert.equal(m.get("chat_moderation_latency_seconds_count"), 1);
  });
});

Deno.test("a replaced text is stored and delivered instead, and the sender's message_sent carries it", async () => {
  await withHook({}, async (t, hook) => {
    hook.answer = (call) => answers.replace(call.body.message_text.replace("darn", "****"));
    const a = await t.connectAs(1);
    const b = await t.connectAs(2);
    a.send({ type: "chat_message", recipient_user_id: 2, message_text: "oh darn it" });
    assert.equal(
      await sentText(a),
      "oh **** it",
    );
    assert.equal((await b.next("chat_message")).message_text, "oh **** it");
    assert.deepEqual(await rowsOf(t), [{ message_text: "oh **** it", moderation: "replaced" }]);
    const m = await metricsOf(t);
    assert.equal(m.get('chat_moderation_outcomes_total{outcome="replaced"}'), 1);
  });
});

Deno.test("a rejected message is answered moderated with the reason and its client_message_id, and nothing is stored or delivered", async () => {
  await withHook({}, async (t, hook) => {
    const a = await t.connectAs(1);
    const b = await t.connectAs(2);
    hook.answer = () => answers.reject("No links, please");
    a.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "see http://x.example",
      client_message_id: "r1",
    });
    assert.deepEqual(await a.next("error"), {
      type: "error",
      code: "moderated",
      message: "No links, please",
      client_message_id: "r1",
    });
    hook.answer = () => answers.reject();
    a.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "again",
      client_message_id: "r2",
    });
    assert.deepEqual(await a.next("error"), {
      type: "error",
      code: "moderated",
      message: "Message rejected",
      client_message_id: "r2",
    });
    assert.deepEqual(await rowsOf(t), []);
    assert.deepEqual(await b.drainFor(100, "chat_message"), []);
    const m = await metricsOf(t);
    assert.equal(m.get('chat_moderation_outcomes_total{outcome="rejected"}'), 2);
    assert.equal(m.get('chat_errors_total{code="moderated"}'), 2);
  });
});

/** Each kind of failed call, the hook's answer that makes it, and its metric's cause. */
const FAILURES: {
  name: string;
  cause: string;
  answer: (held: Promise<void>) => Response | Promise<Response>;
}[] = [
  { name: "a timeout", cause: "timeout", answer: async (held) => (await held, answers.allow()) },
  { name: "a 500", cause: "status", answer: () => new Response("oops", { status: 500 }) },
  { name: "a body that is not JSON", cause: "body", answer: () => new Response("<html>ok</html>") },
  { name: "an unknown action", cause: "body", answer: () => Response.json({ action: "maybe" }) },
  { name: "a replacement that is empty", cause: "body", answer: () => answers.replace("   ") },
  { name: "a replacement too long", cause: "body", answer: () => answers.replace("x".repeat(11)) },
  { name: "a replacement with a NUL", cause: "body", answer: () => answers.replace("a\u0000b") },
];

Deno.test("each failed call (timeout, 500, not an answer, invalid replacement): MODERATION_FAIL=open stores the message as sent", async () => {
  const held = gate();
  await withHook({ MODERATION_TIMEOUT_MS: "200", MAX_MESSAGE_CHARS: "10" }, async (t, hook) => {
    const a = await t.connectAs(1);
    const b = await t.connectAs(2);
    for (const [i, { name, cause, answer }] of FAILURES.entries()) {
      hook.answer = () => answer(held.opened);
      const before = await metricsOf(t);
      a.send({ type: "chat_message", recipient_user_id: 2, message_text: `hi ${i}` });
      assert.equal(await sentText(a), `hi ${i}`, name);
      assert.equal((await b.next("chat_message")).message_text, `hi ${i}`, name);
      const after = await metricsOf(t);
      const failures = `chat_moderation_failures_total{cause="${cause}"}`;
      assert.equal((after.get(failures) ?? 0) - (before.get(failures) ?? 0), 1, name);
    }
    held.open();
    const m = await metricsOf(t);
    assert.equal(m.get('chat_moderation_outcomes_total{outcome="failed"}'), FAILURES.length);
    assert.deepEqual(
      await rowsOf(t),
      FAILURES.map((_, i) => ({ message_text: `hi ${i}`, moderation: "unchecked" })),
    );
  }).finally(held.open);
});

Deno.test("each failed call (timeout, 500, not an answer, invalid replacement): MODERATION_FAIL=closed answers unavailable and stores nothing", async () => {
  const held = gate();
  await withHook(
    { MODERATION_TIMEOUT_MS: "200", MAX_MESSAGE_CHARS: "10", MODERATION_FAIL: "closed" },
    async (t, hook) => {
      const a = await t.connectAs(1);
      const b = await t.connectAs(2);
      for (const [i, { name, cause, answer }] of FAILURES.entries()) {
        hook.answer = () => answer(held.opened);
        const before = await metricsOf(t);
        a.send({
          type: "chat_message",
          recipient_user_id: 2,
          message_text: "hi",
          client_message_id: `f${i}`,
        });
        const error = await a.next("error");
        assert.deepEqual([error.code, error.client_message_id], ["unavailable", `f${i}`], name);
        const after = await metricsOf(t);
        const failures = `chat_moderation_failures_total{cause="${cause}"}`;
        assert.equal((after.get(failures) ?? 0) - (before.get(failures) ?? 0), 1, name);
      }
      held.open();
      assert.deepEqual(await rowsOf(t), []);
      assert.deepEqual(await b.drainFor(50, "chat_message"), []);
    },
  ).finally(held.open);
});

Deno.test("a hook that cannot be reached counts as a connection failure", async () => {
  const hook = startFakeHook(HOOK_SECRET);
  const url = hook.url;
  await hook.close();
  const t = await startTestServer({
    users: [1, 2],
    friends: [[1, 2]],
    env: { MODERATION_URL: url, MODERATION_SECRET: HOOK_SECRET, MODERATION_FAIL: "closed" },
  });
  try {
    const a = await t.connectAs(1);
    a.send({ type: "chat_message", recipient_user_id: 2, message_text: "anyone?" });
    assert.equal((await a.next("error")).code, "unavailable");
    const m = await metricsOf(t);
    assert.equal(m.get('chat_moderation_failures_total{cause="connection"}'), 1);
  } finally {
    await t.close();
  }
});

Deno.test("a sender's messages to a friend are stored and delivered in the order sent when the hook answers them out of order", async () => {
  await withHook({}, async (t, hook) => {
    const first = gate();
    hook.answer = async (call) => {
      // The first message waits until every later one has been answered.
      if (call.body.message_text === "m0") await first.opened;
      return answers.replace(call.body.message_text.toUpperCase());
    };
    const a = await t.connectAs(1);
    const b = await t.connectAs(2);
    for (let i = 0; i < 5; i++) {
      a.send({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: `m${i}`,
        client_message_id: `o${i}`,
      });
    }
    await eventually("every message reached the hook", () => hook.calls.length === 5);
    await eventually("the later ones are answered", () => hook.inFlight === 1);
    assert.deepEqual(await b.drainFor(100, "chat_message"), [], "nothing is delivered before m0");
    first.open();
    const delivered = [];
    const acknowledged = [];
    for (let i = 0; i < 5; i++) {
      delivered.push(await b.next("chat_message"));
      acknowledged.push(
        (await a.next("message_sent")).data as { message_text: string; message_id: number },
      );
    }
    const texts = ["M0", "M1", "M2", "M3", "M4"];
    assert.deepEqual(delivered.map((f) => f.message_text), texts);
    assert.deepEqual(acknowledged.map((f) => f.message_text), texts);
    const ids = delivered.map((f) => f.message_id as number);
    assert.deepEqual([...ids].sort((x, y) => x - y), ids, "ids follow the order sent");
    assert.deepEqual((await rowsOf(t)).map((r) => r.message_text), texts);
  });
});

Deno.test("beyond MODERATION_MAX_IN_FLIGHT calls the failure rule applies at once, and nobody is disconnected", async () => {
  await withHook({ MODERATION_MAX_IN_FLIGHT: "2", MODERATION_FAIL: "closed" }, async (t, hook) => {
    const held = gate();
    hook.answer = async () => (await held.opened, answers.allow());
    try {
      const a = await t.connectAs(1);
      const b = await t.connectAs(2);
      for (let i = 0; i < 5; i++) {
        a.send({
          type: "chat_message",
          recipient_user_id: 2,
          message_text: `b${i}`,
          client_message_id: `b${i}`,
        });
      }
      // Three refused while two are held at the hook.
      const refused = [await a.next("error"), await a.next("error"), await a.next("error")];
      assert.deepEqual(refused.map((e) => e.code), ["unavailable", "unavailable", "unavailable"]);
      // The two calls counted out may still be on their way to the hook.
      await eventually("the two calls reach the hook", () => hook.calls.length === 2);
      assert.equal(hook.maxInFlight, 2);
      const checked = hook.calls.map((c) => c.body.client_message_id!).sort();
      assert.equal(checked.length, 2);
      held.open();
      const stored = [await a.next("message_sent"), await a.next("message_sent")];
      assert.deepEqual(
        stored.map((f) => (f.data as { client_message_id: string }).client_message_id),
        checked,
      );
      assert.deepEqual(
        [...refused.map((e) => e.client_message_id), ...checked].sort(),
        ["b0", "b1", "b2", "b3", "b4"],
      );
      assert.deepEqual((await b.next("chat_message")).client_message_id, checked[0]);
      assert.equal(a.closeCode, undefined);
      assert.equal(b.closeCode, undefined);
      const m = await metricsOf(t);
      assert.equal(m.get('chat_moderation_failures_total{cause="busy"}'), 3);
      assert.equal(hook.calls.length, 2);
    } finally {
      held.open();
    }
  });
});

Deno.test("a retried client_message_id is answered from the stored row without calling the hook again", async () => {
  await withHook({}, async (t, hook) => {
    const a = await t.connectAs(1);
    a.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "once",
      client_message_id: "same",
    });
    const first = (await a.next("message_sent")).data as { message_id: number };
    const again = await t.connectAs(1);
    again.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "once",
      client_message_id: "same",
    });
    assert.equal(
      ((await again.next("message_sent")).data as { message_id: number }).message_id,
      first.message_id,
    );
    // The same id for another message is still refused.
    again.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "other",
      client_message_id: "same",
    });
    assert.equal((await again.next("error")).code, "invalid_field");
    assert.equal(hook.calls.length, 1);
    assert.equal((await rowsOf(t)).length, 1);
  });
});

Deno.test("a retry that arrives while the first frame is at the hook waits for it instead of calling the hook twice", async () => {
  await withHook({}, async (t, hook) => {
    const held = gate();
    hook.answer = async () => (await held.opened, answers.allow());
    try {
      const a = await t.connectAs(1);
      const other = await t.connectAs(1);
      a.send({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: "twice",
        client_message_id: "dup",
      });
      await eventually("the first frame reached the hook", () => hook.calls.length === 1);
      other.send({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: "twice",
        client_message_id: "dup",
      });
      held.open();
      const one = (await a.next("message_sent")).data as { message_id: number };
      const two = (await other.next("message_sent")).data as { message_id: number };
      assert.equal(one.message_id, two.message_id);
      assert.equal(hook.calls.length, 1);
      assert.equal((await rowsOf(t)).length, 1);
    } finally {
      held.open();
    }
  });
});

Deno.test("/notify pushes are not checked by the hook", async () => {
  await withHook({}, async (t, hook) => {
    const b = await t.connectAs(2);
    const event = {
      type: "chat_message",
      message: {
        message_id: 9,
        sender_user_id: 1,
        recipient_user_id: 2,
        message_text: "from the game",
      },
    };
    const res = await fetch(`${t.internalUrl}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${NOTIFY_SECRET}`, "content-type": "application/json" },
      body: JSON.stringify({ user_ids: [2], event }),
    });
    assert.equal(res.status, 202);
    await res.body?.cancel();
    assert.deepEqual(await b.next("chat_message"), event);
    assert.equal(hook.calls.length, 0);
  }, { env: { NOTIFY_SECRET } });
});

/** On the memory repository, whose rows show what the hook did (`moderation`). */
async function withMemoryHook(
  env: Record<string, string>,
  body: (t: MemoryTestServer, hook: FakeHook) => Promise<void>,
): Promise<void> {
  const hook = startFakeHook(HOOK_SECRET);
  try {
    const t = await startMemoryServer({
      users: [1, 2],
      friends: [[1, 2]],
      env: { MODERATION_URL: hook.url, MODERATION_SECRET: HOOK_SECRET, ...env },
    });
    try {
      await body(t, hook);
    } finally {
      await t.close();
    }
  } finally {
    await hook.close();
  }
}

Deno.test("the row records moderation: replaced for a replacement, unchecked for a failure with MODERATION_FAIL=open, none when allowed", async () => {
  await withMemoryHook({}, async (t, hook) => {
    const a = await t.connectAs(1);
    hook.answer = answers.allow;
    a.send({ type: "chat_message", recipient_user_id: 2, message_text: "fine" });
    await a.next("message_sent");
    hook.answer = () => answers.replace("masked");
    a.send({ type: "chat_message", recipient_user_id: 2, message_text: "rude" });
    await a.next("message_sent");
    hook.answer = () => new Response("down", { status: 503 });
    a.send({ type: "chat_message", recipient_user_id: 2, message_text: "unseen" });
    await a.next("message_sent");
    assert.deepEqual(
      t.repository.messages.map((m) => [m.messageText, m.moderation]),
      [["fine", undefined], ["masked", "replaced"], ["unseen", "unchecked"]],
    );
  });
});

Deno.test("a retry of a replaced message is answered with the stored replacement, not refused as another message", async () => {
  await withMemoryHook({}, async (t, hook) => {
    hook.answer = () => answers.replace("masked");
    const a = await t.connectAs(1);
    a.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "rude",
      client_message_id: "rr",
    });
    const first = (await a.next("message_sent")).data as {
      message_id: number;
      message_text: string;
    };
    assert.equal(first.message_text, "masked");
    a.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "rude",
      client_message_id: "rr",
    });
    assert.deepEqual((await a.next("message_sent")).data, first);
    assert.equal(hook.calls.length, 1);
    assert.equal(t.repository.messages.length, 1);
  });
});

Deno.test("the log says when the hook starts failing, when the cause changes and when it answers again for 10 s, not once per message", async () => {
  const hook = startFakeHook(HOOK_SECRET);
  const lines: { event: string; cause?: string; previous_cause?: string | null }[] = [];
  let clock = 1_000_000;
  try {
    const moderator = await HttpModerator.create({
      now: () => clock,
      url: hook.url,
      secret: HOOK_SECRET,
      timeoutMs: 1000,
      fail: "open",
      maxInFlight: 10,
      maxMessageChars: 100,
      metrics: new ServerMetrics(),
      logger: createLogger("debug", (line) => lines.push(JSON.parse(line))),
    });
    const review = (text: string) =>
      moderator.review({ kind: "new", senderUserId: 1, recipientUserId: 2, messageText: text });
    hook.answer = () => new Response("no", { status: 500 });
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await review("secret words"), {
        kind: "store",
        text: "secret words",
        moderation: "unchecked",
      });
    }
    hook.answer = () => new Response("not json");
    await review("secret words");
    await review("secret words");
    // Flapping (an answer between failures of the same cause) logs nothing more.
    hook.answer = answers.allow;
    await review("secret words");
    hook.answer = () => new Response("not json");
    await review("secret words");
    hook.answer = answers.allow;
    clock += 5_000;
    await review("secret words");
    assert.equal(lines.length, 2, "not recovered after 5 s");
    clock += 10_000;
    assert.deepEqual(await review("secret words"), { kind: "store", text: "secret words" });
    await review("secret words");
    assert.deepEqual(lines.map((l) => [l.event, l.cause ?? null, l.previous_cause ?? null]), [
      ["moderation_failing", "status", null],
      ["moderation_failing", "body", "status"],
      ["moderation_recovered", null, "body"],
    ]);
    assert.ok(!JSON.stringify(lines).includes("secret words"), "no message text in the log");
  } finally {
    await hook.close();
  }
});

Deno.test("edits go through the hook: a rejected edit leaves the old text, a replaced one is stored as replaced", async () => {
  await withHook({}, async (t, hook) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    hook.answer = () => answers.allow();
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "hello" });
    const id = ((await alice.next("message_sent")).data as { message_id: number }).message_id;
    await bob.next("chat_message");

    hook.answer = () => answers.reject("No links");
    alice.send({ type: "edit_message", message_id: id, message_text: "see http://x" });
    assert.deepEqual(await alice.next("error"), {
      type: "error",
      code: "moderated",
      message: "No links",
    });
    const edit = hook.calls.at(-1)!;
    assert.deepEqual(
      [edit.body.kind, edit.body.message_id, edit.body.recipient_user_id, edit.signed],
      ["edit", id, 2, true],
    );
    assert.deepEqual(await bob.drainFor(200, "message_updated"), [], "nothing changed");
    assert.deepEqual(await rowsOf(t), [{ message_text: "hello", moderation: null }]);

    hook.answer = () => answers.replace("hello ***");
    alice.send({ type: "edit_message", message_id: id, message_text: "hello darn" });
    const mine = await alice.next("message_updated");
    const theirs = await bob.next("message_updated");
    for (const frame of [mine, theirs]) {
      assert.equal((frame.message as { message_text: string }).message_text, "hello ***");
    }
    assert.deepEqual(await rowsOf(t), [{ message_text: "hello ***", moderation: "replaced" }]);

    // An edit the store would refuse is refused without asking the hook.
    const calls = hook.calls.length;
    bob.send({ type: "edit_message", message_id: id, message_text: "not mine" });
    assert.equal((await bob.next("error")).code, "not_found");
    assert.equal(hook.calls.length, calls);
  });
});
