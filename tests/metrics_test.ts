/** `GET /metrics` after real traffic, parsed as Prometheus text. */

import assert from "node:assert/strict";
import { startTestServer } from "./support/server.ts";

/** Parses the exposition format into `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

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
