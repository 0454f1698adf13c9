/**
 * A sign-in costs the same for 10 unread messages and for 5,000
 * (docs/protocol.md, "Unread counts"): what `authenticated` reads of the
 * mailbox, counted by Postgres itself (the rows its statements read from
 * `messages` and its indexes, in the transaction's own statistics), not timed.
 */

import assert from "node:assert/strict";
import * as mailbox from "../src/store/postgres/mailbox_queries.ts";
import { connectRepository, createTestDatabase } from "./support/db.ts";

Deno.test("a sign-in reads a few rows of messages whether 10 or 5,000 are unread", async () => {
  const db = await createTestDatabase();
  const repository = await connectRepository(db.url);
  const session = await db.sql.reserve();
  try {
    // The game backend's rows: 10 unread to user 1, 5,000 unread to user 3, and traffic of others.
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 select 2, 1, 'to 1: ' || g from generate_series(1, 10) g`;
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 select 4, 3, 'to 3: ' || g from generate_series(1, 5000) g`;
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 select 10 + g % 50, 11 + g % 50, 'others' from generate_series(1, 5000) g`;
    await db.sql`analyze messages`;

    /** Rows the summary read from `messages` and its indexes, and the summary. */
    const cost = async (userId: number) => {
      await session`begin`;
      try {
        const summary = await mailbox.mailboxSummary(session, userId);
        const [row] = await session<{ n: string }[]>`
          select (sum(pg_stat_get_xact_tuples_returned(c.oid))
                  + sum(pg_stat_get_xact_tuples_fetched(c.oid)))::text as n
          from pg_class c
          where c.oid = 'messages'::regclass
             or c.oid in (select indexrelid from pg_index where indrelid = 'messages'::regclass)`;
        return { rows: Number(row!.n), summary };
      } finally {
        await session`rollback`;
      }
    };
    // The first sign-in after the rows arrived, then a later one: both read the counters.
    for (let round = 0; round < 2; round++) {
      const few = await cost(1);
      const many = await cost(3);
      assert.equal(few.summary.unreadCount, 10);
      assert.equal(many.summary.unreadCount, 5000);
      assert.deepEqual(many.summary.unreadBySender, new Map([[4, 5000]]));
      // The two last-id probes (a row or two each, whatever the mailbox); counting the
      // unread rows would read at least 5,000.
      for (const [unread, { rows }] of [[10, few], [5000, many]] as const) {
        assert.ok(rows <= 8, `${rows} rows of messages read for ${unread} unread`);
      }
    }
  } finally {
    session.release();
    await repository.close();
    await db.drop();
  }
});
