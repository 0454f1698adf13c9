/**
 * A database failure's log line names the user whose request failed, so a user whose requests
 * keep failing (an abuser's expensive reads among them) shows in the logs.
 */

import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { UnavailableError } from "../src/store/repository.ts";
import { connectRepository, createTestDatabase, waitingOnLock } from "./support/db.ts";

Deno.test("a statement that fails for one user's read, sync, mailbox or sign-in logs that user's id", async () => {
  const db = await createTestDatabase();
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("debug", (line) => lines.push(JSON.parse(line)));
  const repository = await connectRepository(db.url, { logger });
  const holder = await db.sql.reserve();
  await db.addUser(13);
  try {
    await holder`begin`;
    await holder`lock table messages in access exclusive mode`;
    const failing: [number, string, () => Promise<unknown>][] = [
      [7, "chat_mark_read(", () => repository.markRead(7, 8, 100)],
      [9, "'head' as kind", () => repository.updatesAfter(9, 0, 10)],
      [11, "chat_mailbox(", () => repository.mailboxSummary(11)],
      [13, "chat_sign_in(", () => repository.signIn(13, Math.floor(Date.now() / 1000))],
    ];
    for (const [userId, needle, request] of failing) {
      const failed = assert.rejects(request(), UnavailableError);
      // The statement waits for the table, then is cancelled, as an overloaded database would.
      await waitingOnLock(db, needle);
      await db.sql`select pg_cancel_backend(pid) from pg_stat_activity
                   where datname = current_database() and wait_event_type = 'Lock'
                     and position(${needle} in query) > 0`;
      await failed;
      const line = lines.findLast((l) => l.event === "db_error");
      assert.ok(line !== undefined, "no db_error line");
      assert.equal(line.user_id, userId);
    }
  } finally {
    await holder`rollback`.catch(() => {});
    holder.release();
    await repository.close();
    await db.drop();
  }
});
