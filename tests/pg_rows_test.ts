/**
 * postgres.js 3.4 leaves holes at the start of the next result on a
 * connection whose previous query failed while its rows streamed in
 * (`src/store/postgres/pg_rows.ts`). The repository's queries must still answer right.
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { messagesBetween } from "../src/store/postgres/mailbox_queries.ts";
import { rowsOf } from "../src/store/postgres/pg_rows.ts";
import { connectRepository, createTestDatabase } from "./support/db.ts";

/** Three rows streamed, then an error (division by zero on the fourth). */
const failsMidStream = (sql: postgres.Sql) =>
  sql`select i, 1 / (4 - i) as boom from generate_series(1, 10) i`.then(
    () => assert.fail("the first query should have failed"),
    () => {},
  );

Deno.test("a query pipelined behind one that failed mid-stream still gets exactly its rows", async () => {
  const db = await createTestDatabase();
  const repository = await connectRepository(db.url, { poolSize: 1 }); // applies the migrations
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 values (1, 2, 'one'), (2, 1, 'two'), (1, 2, 'three')`;
    await sql`select 1`;
    // The hazard itself, on a plain query: three leading holes.
    const [, raw] = await Promise.all([
      failsMidStream(sql),
      sql<{ x: number }[]>`select x from generate_series(1, 2) x`,
    ]);
    assert.equal(raw.length, 5, "postgres.js no longer leaves holes: pg_rows.ts can go");
    assert.deepEqual(rowsOf(raw).map((r) => r.x), [1, 2]);
    // A repository query in the same position answers as if nothing had failed.
    const [, page] = await Promise.all([
      failsMidStream(sql),
      messagesBetween(sql, 1, 0, Number.MAX_SAFE_INTEGER, 10),
    ]);
    assert.deepEqual(page.messages.map((m) => m.messageText), ["one", "two", "three"]);
    assert.equal(page.hasMore, false);
  } finally {
    await sql.end();
    await repository.close();
    await db.drop();
  }
});
