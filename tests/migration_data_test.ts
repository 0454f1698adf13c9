/**
 * @module migration_data_test
 * The data path of docs/migrating.md: its `import-relations.sql` and `import-messages.sql`, read
 * from the guide and run by `psql` on export files written the way `mysql --batch` writes them,
 * into a database the server has migrated; then what a player would notice from the server.
 */

import assert from "node:assert/strict";
import { docBlock } from "./support/migrating_doc.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { startTestServer } from "./support/server.ts";

/** `mysql --batch --skip-column-names` output: tabs between fields, `\t` `\n` `\\` escaped, NULL. */
const EXPORT: Record<string, string> = {
  "users.tsv": [
    "1\talice1\t1",
    "2\tbob\\tthe\\\\builder\t1",
    "3\tNULL\t1",
    "4\tdave4\t1",
    "5\teve5\t0",
  ].join("\n") + "\n",
  "friendships.tsv": [
    "10\t1\t2\tapproved\t1764600000",
    "11\t1\t3\tpending\t1764600000",
    "12\t4\t1\tapproved\tNULL",
    "13\t5\t1\tapproved\t1764600000",
  ].join("\n") + "\n",
  "blocks.tsv": "4\t1\t1764600000\n",
  "messages.tsv": [
    "100\t2\t1\t&lt;b&gt;Tom&lt;/b&gt; &amp;amp; &quot;Jerry&quot;\\nit&#039;s\t1\t1764600000\t1764600060",
    "101\t1\t2\tNULL\t0\t1764600100\tNULL",
  ].join("\n") + "\n",
};

async function psql(db: TestDatabase, dir: string, script: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/script.sql`, script);
  const out = await new Deno.Command("psql", {
    args: ["-X", "-q", "-d", db.url, "-f", "script.sql"],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

const hasPsql = (() => {
  try {
    return new Deno.Command("psql", { args: ["--version"], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

const NAME = "the guide's import scripts bring MySQL's users, friendships, blocks and history " +
  "across, idempotently, and the server acts on them";

Deno.test({
  name: hasPsql ? NAME : `${NAME} (skipped: psql is missing)`,
  ignore: !hasPsql,
  async fn() {
    const db = await createTestDatabase();
    const dir = await Deno.makeTempDir({ prefix: "gb-import-" });
    let t: Awaited<ReturnType<typeof startTestServer>> | undefined;
    try {
      // Migrates the empty database; user 6 is there from an earlier import, since deleted in MySQL.
      t = await startTestServer({ db, users: [6] });
      for (const [file, text] of Object.entries(EXPORT)) {
        await Deno.writeTextFile(`${dir}/${file}`, text);
      }
      const relations = await docBlock("sql", "-- import-relations.sql");
      const history = await docBlock("sql", "-- import-messages.sql");
      for (let run = 0; run < 2; run++) {
        await psql(db, dir, relations);
        await psql(db, dir, history);
      }

      const users = await db.sql`select user_id, username, active from users order by user_id`;
      assert.deepEqual(users.map((u) => [Number(u.user_id), u.username, u.active]), [
        [1, "alice1", true],
        [2, "bob\tthe\\builder", true],
        [3, null, true],
        [4, "dave4", true],
        [5, "eve5", false],
        [6, "user6", false],
      ]);
      const [counts] = await db.sql`select
        (select count(*)::int from friendships) as friendships,
        (select count(*)::int from blocks) as blocks`;
      assert.deepEqual({ ...counts }, { friendships: 4, blocks: 1 });
      const messages = await db.sql`select sender_user_id, message_text, is_read, sent_at, read_at,
        client_message_id from messages order by message_id`;
      assert.deepEqual(
        messages.map((m) => [
          Number(m.sender_user_id),
          m.message_text,
          m.is_read,
          m.sent_at.toISOString(),
          m.read_at?.toISOString() ?? null,
          m.client_message_id,
        ]),
        [
          [
            1 + 1,
            '<b>Tom</b> &amp; "Jerry"\nit\'s',
            true,
            "2025-12-01T14:40:00.000Z",
            "2025-12-01T14:41:00.000Z",
            "mysql:100",
          ],
          [1, "NULL", false, "2025-12-01T14:41:40.000Z", null, "mysql:101"],
        ],
      );

      const alice = await t.connectAs(1);
      const bob = await t.connectAs(2);
      alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "after import" });
      assert.equal((await bob.next("chat_message")).message_text, "after import");
      for (const [to, code] of [[3, "not_friends"], [4, "forbidden"]] as const) {
        alice.send({ type: "chat_message", recipient_user_id: to, message_text: "hi" });
        assert.equal((await alice.next("error")).code, code, `to user ${to}`);
      }
      const client = await t.connect();
      for (const inactive of [5, 6]) {
        client.send({ type: "authenticate", auth_token: await t.token(inactive) });
        assert.equal((await client.next("auth_error")).message, "Invalid auth token");
      }
    } finally {
      await t?.close();
      await db.drop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
