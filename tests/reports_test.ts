/**
 * `report` (docs/protocol.md, "Reports") on a real server and database: the
 * stored row and its snapshot, idempotence, `not_found` for someone outside
 * the conversation, and bad fields.
 */

import assert from "node:assert/strict";
import { withTestServer } from "./support/server.ts";
import { parseMetrics } from "./support/metrics.ts";

const OPTIONS = {
  users: [1, 2, 3],
  friends: [[1, 2], [1, 3]] as [number, number][],
  env: { CHAT_RATE_BURST: "100" },
};

Deno.test("a reported message is stored with the reporter, the author, the reason, the note and the conversation around it", async () => {
  await withTestServer(OPTIONS, async (t) => {
    const a = await t.connectAs(1);
    const b = await t.connectAs(2);
    const ids: number[] = [];
    for (let i = 0; i < 14; i++) {
      const [from, to] = i % 2 === 0 ? [a, 2] : [b, 1];
      from.send({ type: "chat_message", recipient_user_id: to, message_text: `m${i}` });
      ids.push(((await from.next("message_sent")).data as { message_id: number }).message_id);
      a.send({ type: "chat_message", recipient_user_id: 3, message_text: `to 3 #${i}` });
      await a.next("message_sent");
    }
    b.send({
      type: "report",
      message_id: ids[12],
      reason: "harassment",
      note: " said mean things ",
    });
    const answer = await b.next("report_received");
    assert.equal(typeof answer.report_id, "number");
    const rows = await t.db.sql<
      {
        report_id: string;
        reporter_user_id: string;
        reported_user_id: string;
        message_id: string;
        reason: string;
        note: string | null;
        snapshot: { message_id: number; message_text: string; sender_user_id: number }[];
      }[]
    >`select * from chat_reports`;
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.deepEqual(
      [Number(row.report_id), Number(row.reporter_user_id), Number(row.reported_user_id)],
      [answer.report_id, 2, 1],
    );
    assert.deepEqual([Number(row.message_id), row.reason, row.note], [
      ids[12],
      "harassment",
      "said mean things",
    ]);
    // 10 before, the message, the one after: that conversation only, oldest first.
    assert.deepEqual(
      row.snapshot.map((m) => m.message_text),
      ["m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11", "m12", "m13"],
    );
    assert.deepEqual(row.snapshot.map((m) => m.message_id), ids.slice(2));
    const m = parseMetrics(await (await fetch(`${t.internalUrl}/metrics`)).text());
    assert.equal(m.get('chat_frames_in_total{type="report"}'), 1);
    assert.equal(m.get('chat_frames_out_total{type="report_received"}'), 1);
  });
});

Deno.test("reporting the same message again answers the same report_id and stores nothing new; each of its two users may report it", async () => {
  await withTestServer(OPTIONS, async (t) => {
    const a = await t.connectAs(1);
    const b = await t.connectAs(2);
    a.send({ type: "chat_message", recipient_user_id: 2, message_text: "buy gold at …" });
    const id = ((await a.next("message_sent")).data as { message_id: number }).message_id;
    b.send({ type: "report", message_id: id, reason: "spam" });
    const first = (await b.next("report_received")).report_id;
    b.send({ type: "report", message_id: String(id), reason: "other", note: "again" });
    assert.equal((await b.next("report_received")).report_id, first);
    a.send({ type: "report", message_id: id, reason: "cheating" });
    assert.notEqual((await a.next("report_received")).report_id, first);
    const rows = await t.db.sql<{ reporter_user_id: string; reason: string }[]>`
      select reporter_user_id, reason from chat_reports order by report_id`;
    assert.deepEqual(rows.map((r) => [Number(r.reporter_user_id), r.reason]), [
      [2, "spam"],
      [1, "cheating"],
    ]);
  });
});

Deno.test("someone outside the conversation and a message that does not exist get the same not_found", async () => {
  await withTestServer(OPTIONS, async (t) => {
    const a = await t.connectAs(1);
    const c = await t.connectAs(3);
    a.send({ type: "chat_message", recipient_user_id: 2, message_text: "private" });
    const id = ((await a.next("message_sent")).data as { message_id: number }).message_id;
    for (const messageId of [id, id + 1000]) {
      c.send({ type: "report", message_id: messageId, reason: "hate" });
      assert.deepEqual(await c.next("error"), {
        type: "error",
        code: "not_found",
        message: "Message not found",
      });
    }
    assert.equal((await t.db.sql`select 1 from chat_reports`).length, 0);
  });
});

Deno.test("a report with a missing field, a bad message_id, an unknown reason or a bad note is refused with what is wrong", async () => {
  await withTestServer(OPTIONS, async (t) => {
    const a = await t.connectAs(1);
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ reason: "spam" }, "missing_fields", /Missing/],
      [{ message_id: 1 }, "missing_fields", /Missing/],
      [{ message_id: 0, reason: "spam" }, "invalid_field", /message_id/],
      [{ message_id: "x", reason: "spam" }, "invalid_field", /message_id/],
      [
        { message_id: 1, reason: "rude" },
        "invalid_field",
        /reason must be one of spam, harassment, hate, sexual, self_harm, cheating, other/,
      ],
      [{ message_id: 1, reason: "spam", note: 5 }, "invalid_field", /note/],
      [{ message_id: 1, reason: "spam", note: "é".repeat(501) }, "invalid_field", /500/],
      [{ message_id: 1, reason: "spam", note: "a\u0000b" }, "invalid_field", /note/],
    ];
    for (const [fields, code, message] of cases) {
      a.send({ type: "report", ...fields });
      const error = await a.next("error");
      assert.equal(error.code, code, JSON.stringify(fields));
      assert.match(String(error.message), message);
    }
    // 500 code points is the limit, not over it: answered not_found (no message 1), not invalid_field.
    a.send({ type: "report", message_id: 1, reason: "spam", note: "é".repeat(500) });
    assert.equal((await a.next("error")).code, "not_found");
  });
});

Deno.test("report needs an authenticated connection", async () => {
  await withTestServer(OPTIONS, async (t) => {
    const anonymous = await t.connect();
    anonymous.send({ type: "report", message_id: 1, reason: "spam" });
    assert.equal((await anonymous.next("error")).code, "not_authenticated");
  });
});
