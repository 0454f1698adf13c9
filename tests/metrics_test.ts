/** `GET /metrics` after real traffic, parsed as Prometheus text. */

import assert from "node:assert/strict";
import { parseMetrics } from "./support/metrics.ts";
import { startMemoryServer, startTestServer } from "./support/server.ts";

Deno.test("metrics count connections, frames by type, errors by code, stored messages and batches", async () => {
  const t = await startTestServer({ users: [1, 2, 3], friends: [[1, 2]] });
  try {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    await t.connect(); // stays unauthenticated
    for (let i = 0; i < 5; i++) {
      alice.send({ type: "chat_message", recipient_user_id: 2, message_text: `m${i}` });
    }
    for (let i = 0; i < 5; i++) await bob.next("chat_message");
    alice.send({ type: "chat_message", recipient_user_id: 3, message_text: "stranger" });
    await alice.next("error");
    const res = await fetch(`${t.internalUrl}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
    const m = parseMetrics(await res.text());
    assert.equal(m.get('chat_connections{state="authenticated"}'), 2);
    assert.equal(m.get('chat_connections{state="unauthenticated"}'), 1);
    assert.equal(m.get("chat_users"), 2);
    assert.equal(m.get('chat_frames_in_total{type="chat_message"}'), 6);
    assert.equal(m.get('chat_frames_in_total{type="authenticate"}'), 2);
    assert.equal(m.get('chat_frames_out_total{type="chat_message"}'), 5);
    assert.equal(m.get('chat_frames_out_total{type="message_sent"}'), 5);
    assert.equal(m.get('chat_errors_total{code="not_friends"}'), 1);
    assert.equal(m.get("chat_messages_stored_total"), 5);
    assert.equal(m.get("chat_send_ack_seconds_count"), 5);
    assert.equal(m.get("chat_message_batch_size_sum"), 5);
    assert.ok((m.get("chat_message_batch_size_count") ?? 0) >= 1);
    assert.ok((m.get("chat_message_commit_seconds_count") ?? 0) >= 1);
    assert.ok((m.get("process_resident_memory_bytes") ?? 0) > 1e6);
  } finally {
    await t.close();
  }
});

Deno.test("v1.1 frames are counted by their type, and the build, dependencies and lag are exported", async () => {
  const t = await startTestServer({ users: [1, 2], friends: [[1, 2]] });
  try {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "hi" });
    const message = await bob.next("chat_message");
    bob.send({ type: "delivered", message_id: message.message_id });
    await alice.next("delivered");
    bob.send({ type: "read", friend_user_id: 1, up_to_message_id: message.message_id });
    await alice.next("read");
    alice.send({ type: "sync", after_message_id: 0 });
    await alice.next("sync_result");
    alice.send({ type: "history", friend_user_id: 2 });
    await alice.next("history_result");
    alice.send({ type: "reauthenticate", auth_token: await t.token(1) });
    await alice.next("reauthenticated");
    const m = parseMetrics(await (await fetch(`${t.internalUrl}/metrics`)).text());
    // A receipt goes to both users' connections (v1.2: the acting one too), each frame counted.
    for (const type of ["delivered", "read"]) {
      assert.equal(m.get(`chat_frames_out_total{type="${type}"}`), 2, type);
    }
    for (const type of ["sync_result", "history_result", "reauthenticated"]) {
      assert.equal(m.get(`chat_frames_out_total{type="${type}"}`), 1, type);
    }
    assert.equal(
      m.get('chat_frames_out_total{type="event"}'),
      undefined,
      "nothing counted as event",
    );
    const build = [...m.keys()].find((k) => k.startsWith("chat_build_info{"));
    assert.ok(build?.includes('protocol="1.2"'), String(build));
    assert.equal(m.get('chat_dependency_up{dependency="postgres"}'), 1);
    assert.ok((m.get('chat_dependency_latency_seconds{dependency="postgres"}') ?? -1) >= 0);
    assert.ok((m.get("chat_event_loop_lag_seconds") ?? -1) >= 0);
    assert.equal(m.get("chat_message_writer_queue"), 0);
  } finally {
    await t.close();
  }
});

Deno.test("with METRICS_SECRET set, a scrape needs it; without, /metrics is open", async () => {
  const t = await startMemoryServer({ env: { METRICS_SECRET: "scrape-secret" } });
  try {
    const anonymous = await fetch(`${t.internalUrl}/metrics`);
    assert.equal(anonymous.status, 401);
    assert.deepEqual(await anonymous.json(), { error: "Unauthorized" });
    const scrape = await fetch(`${t.internalUrl}/metrics`, {
      headers: { authorization: "Bearer scrape-secret" },
    });
    assert.equal(scrape.status, 200);
    assert.ok(parseMetrics(await scrape.text()).has("chat_users"));
  } finally {
    await t.close();
  }
  const open = await startMemoryServer();
  try {
    const res = await fetch(`${open.internalUrl}/metrics`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  } finally {
    await open.close();
  }
});
