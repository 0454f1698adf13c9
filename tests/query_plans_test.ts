/**
 * The plans of the catch-up and receipt queries (docs/protocol.md, "Query
 * plans") for a user whose messages are all old: a heavy user who went quiet.
 * The planner, expecting a user with a tenth of the table to be spread
 * evenly, would walk the primary key from the newest rows down (or from
 * `after_message_id` up) and filter by user, reading every newer row of the
 * table to find none; each query must read the user's own index range instead.
 */

import assert from "node:assert/strict";
import * as updates from "../src/store/postgres/updates_queries.ts";
import * as mailbox from "../src/store/postgres/mailbox_queries.ts";
import { flagBatch } from "../src/store/postgres/read_flags.ts";
import { connectRepository, createTestDatabase } from "./support/db.ts";
import { explainer } from "./support/explain.ts";
import { POOL_SETTINGS } from "../src/store/postgres/repository.ts";

const ROWS = 200_000;
/** Users 201 and 202 wrote the first tenth of the table to each other, then nothing. */
const OLD = ROWS / 10;

Deno.test("sync, history, unread counts and read of a user whose messages are all old read the user's index range, not a primary-key walk", async () => {
  const db = await createTestDatabase();
  const repository = await connectRepository(db.url); // applies the migrations
  await repository.close();
  const plans = explainer(db.url, POOL_SETTINGS);
  try {
    await db.sql.begin(async (tx) => {
      await tx`set local chat.message_ids_locked = 'on'`;
      await tx.unsafe(`
        insert into messages (sender_user_id, recipient_user_id, message_text, is_read)
        select case when g <= ${OLD} then 201 + g % 2 else 1000 + (g::bigint * 7919) % 19000 end,
               case when g <= ${OLD} then 202 - g % 2 else 1000 + (g::bigint * 104729 + 1) % 19000 end,
               'm' || g, g <= ${OLD} - 2000 or g > ${OLD}
        from generate_series(1, ${ROWS}) g`);
      // A read of 202's messages whose flags are still being set.
      await tx`insert into chat_read_marks (reader_user_id, friend_user_id, up_to_message_id,
                                            read_at)
               values (201, 202, ${OLD - 1000}, now())`;
    });
    await db.sql`vacuum analyze messages`;
    const far = new Date(Date.now() + 3_600_000);
    const queries: [string, Parameters<typeof plans.plan>[0]][] = [
      [`v1.1 sync after its last message`, (q) => mailbox.messagesBetween(q, 201, OLD, ROWS, 500)],
      [`v1.1 sync from its first message`, (q) => mailbox.messagesBetween(q, 201, 0, ROWS, 500)],
      [`sync after a seq`, (q) => updates.updatesAfter(q, 201, 0, 500)],
      ["history, latest page", (q) => mailbox.conversationBefore(q, 201, 202, undefined, 50)],
      ["history, further back", (q) => mailbox.conversationBefore(q, 201, 202, OLD / 2, 50)],
      ["unread counts and last id", (q) => mailbox.mailboxSummary(q, 201)],
      ["read up to the latest", (q) => mailbox.markRead(q, 201, 202, 2 ** 53 - 1, far)],
      ["a batch of read flags", (q) => flagBatch(q, 201, 202, 0, 200)],
    ];
    for (const [name, call] of queries) {
      const lines = await plans.plan(call);
      const plan = lines.join("\n");
      assert.doesNotMatch(plan, /Seq Scan on messages/, `${name}:\n${plan}`);
      lines.forEach((line, i) => {
        if (!line.includes("using messages_pkey")) return;
        // a probe of one id (a row of the page, a row to flag) is no walk
        assert.match(lines[i + 1] ?? "", /Index Cond: \(message_id = /, `${name}:\n${plan}`);
      });
      for (const [, removed] of plan.matchAll(/Rows Removed by Filter: (\d+)/g)) {
        assert.ok(Number(removed) <= 1000, `${name} filtered ${removed} rows:\n${plan}`);
      }
      // and no scan reads more of the table than a page (or a batch, or the unread rows)
      for (const [, rows, loops] of plan.matchAll(/Scan.* on messages .*rows=(\d+) loops=(\d+)/g)) {
        assert.ok(Number(rows) * Number(loops) <= 1001, `${name} read ${rows} rows:\n${plan}`);
      }
    }
  } finally {
    await plans.end();
    await db.drop();
  }
});
