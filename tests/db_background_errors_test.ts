/**
 * postgres.js's own query on a new connection (the array types) is not
 * awaited by anyone: its failure must be logged, not end the process
 * (`src/store/postgres/background_errors.ts`).
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { logUnhandledDatabaseErrors } from "../src/store/postgres/background_errors.ts";
import type { Logger } from "../src/log.ts";
import { createTestDatabase } from "./support/db.ts";
import { sleep } from "./support/wait.ts";

Deno.test("a new connection whose type query times out is logged and the process carries on", async () => {
  const db = await createTestDatabase();
  const logged: { event: string; fields: Record<string, unknown> | undefined }[] = [];
  const record = (event: string, fields?: Record<string, unknown>) =>
    logged.push({ event, fields });
  const logger: Logger = { debug: record, info: record, warn: record, error: record };
  const stop = logUnhandledDatabaseErrors(logger);
  const holder = postgres(db.url, { max: 1, onnotice: () => {} });
  const fresh = postgres(db.url, {
    max: 1,
    onnotice: () => {},
    connection: { statement_timeout: 300 },
  });
  try {
    // The catalog postgres.js reads on connecting is held, as a stalled database would.
    const released = Promise.withResolvers<void>();
    const held = holder.begin(async (tx) => {
      await tx`lock table pg_catalog.pg_type in access exclusive mode`;
      await released.promise;
    });
    await sleep(100);
    const first = fresh`select 1 as one`.execute(); // connects; its type query times out
    const answer = first.then((rows) => [...rows], (err) => err);
    for (let i = 0; i < 100 && logged.length === 0; i++) {
      await sleep(50);
    }
    released.resolve();
    await held;
    assert.equal(logged[0]?.event, "db_background_error", JSON.stringify(logged));
    assert.equal(logged[0]?.fields?.code, "57014");
    // Our own first query is answered with the same error (its caller handles it) ...
    assert.equal((await answer as { code?: string }).code, "57014");
    // ... and the client goes on serving queries.
    assert.deepEqual([...(await fresh`select 2 as two`)], [{ two: 2 }]);
  } finally {
    stop();
    await fresh.end();
    await holder.end();
    await db.drop();
  }
});
