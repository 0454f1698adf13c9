/**
 * Migration 6 (per-user update sequences, docs/updates.md) on a game database
 * that runs v1.1 (migrations 1–5) and has traffic: unread counts are the v1.1
 * ones from the first login, before and after the background pass; the
 * trigger swap leaves no insert without its updates while the game inserts;
 * sequences start at the migration and older messages stay reachable.
 */

import assert from "node:assert/strict";
import postgres, { type Sql } from "postgres";
import { migrate, MIGRATIONS, MIGRATIONS_TABLE } from "../src/store/postgres/migrations.ts";
import type { Frame, TestClient } from "./support/client.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { eventually } from "./support/wait.ts";

/** The last version of v1.1; migration 6 is the first of v1.2. */
const V1_1 = 5;

/**
 * Brings an empty database to the v1.1 schema: the later versions are recorded
 * as applied so that `migrate` stops after 5, then their records are removed,
 * so the next `migrate` (or a server's start) applies them.
 */
async function migrateToV1_1(db: TestDatabase): Promise<void> {
  const later = MIGRATIONS.filter((m) => m.version > V1_1);
  await db.sql.unsafe(`create table ${MIGRATIONS_TABLE} (
    version integer primary key, name text not null,
    applied_at timestamptz not null default now())`);
  for (const m of later) {
    await db.sql.unsafe(`insert into ${MIGRATIONS_TABLE} (version, name) values ($1, $2)`, [
      m.version,
      m.name,
    ]);
  }
  assert.deepEqual(await migrate(db.sql), [1, 2, 3, 4, 5]);
  await db.sql.unsafe(`delete from ${MIGRATIONS_TABLE} where version > ${V1_1}`);
  const [trigger] = await db.sql`select count(*)::int as n from pg_trigger
    where tgname = 'chat_message_id_in_commit_order'`;
  assert.equal(trigger!.n, 1, "the v1.1 trigger is in place");
}

type Counts = Record<string, Record<string, number>>;

/** What a v1.1 `authenticated` reported: unread rows by sender, above the conversation's mark. */
async function v1_1UnreadCounts(sql: Sql): Promise<Counts> {
  const rows = await sql<{ user_id: string; friend: string; n: number }[]>`
    select m.recipient_user_id::text as user_id, m.sender_user_id::text as friend,
           count(*)::int as n
    from messages m
    where not m.is_read
      and m.message_id > coalesce((select r.up_to_message_id from chat_read_marks r
                                   where r.reader_user_id = m.recipient_user_id
                                     and r.friend_user_id = m.sender_user_id), 0)
    group by 1, 2`;
  const counts: Counts = {};
  for (const row of rows) (counts[row.user_id] ??= {})[row.friend] = row.n;
  return counts;
}

/** The counters of every user (`chat_unread`), non-zero only. */
async function counters(sql: Sql): Promise<Counts> {
  const rows = await sql<{ user_id: string; friend: string; n: number }[]>`
    select user_id::text, friend_user_id::text as friend, unread::int as n
    from chat_unread where unread > 0`;
  const counts: Counts = {};
  for (const row of rows) (counts[row.user_id] ??= {})[row.friend] = row.n;
  return counts;
}

/** Signs in as `userId` on a new connection; the `authenticated` frame and the connection. */
async function signIn(t: TestServer, userId: number): Promise<[Frame, TestClient]> {
  const client = await t.connect();
  client.send({ type: "authenticate", auth_token: await t.token(userId) });
  return [await client.next("authenticated"), client];
}

function unreadOf(frame: Frame): { unread_count: unknown; unread_by_friend: unknown } {
  return { unread_count: frame.unread_count, unread_by_friend: frame.unread_by_friend };
}

function expectedUnread(counts: Counts, userId: number) {
  const byFriend = counts[String(userId)] ?? {};
  return {
    unread_count: Object.values(byFriend).reduce((a, b) => a + b, 0),
    unread_by_friend: byFriend,
  };
}

/** Users 1001–1120 each have 1–4 unread messages from user 1: three passes of the backfill. */
const MANY = Array.from({ length: 120 }, (_, i) => 1001 + i);

async function seedV1_1Mailboxes(db: TestDatabase): Promise<void> {
  await db.seed({ users: [1, 2, 3, 4, 5, ...MANY], friends: [[1, 2], [1, 3], [1, 4], [1, 5]] });
  const say = async (from: number, to: number, n: number, read = false) => {
    for (let i = 0; i < n; i++) {
      await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text, is_read)
                   values (${from}, ${to}, ${`${from}→${to} #${i}`}, ${read})`;
    }
  };
  await say(2, 1, 3);
  await say(3, 1, 2);
  await say(2, 1, 1, true);
  // user 2 read up to the third of five from user 1 (the mark's rows not flagged yet)
  await say(1, 2, 5);
  const [third] = await db.sql`select message_id from messages
    where sender_user_id = 1 and recipient_user_id = 2 order by message_id offset 2 limit 1`;
  await db.sql`insert into chat_read_marks (reader_user_id, friend_user_id, up_to_message_id,
    read_at) values (2, 1, ${third!.message_id}, now())`;
  // user 3 read everything from user 1 by the mark
  await say(1, 3, 2);
  const [last] = await db
    .sql`select max(message_id) as id from messages where recipient_user_id = 3`;
  await db.sql`insert into chat_read_marks (reader_user_id, friend_user_id, up_to_message_id,
    read_at) values (3, 1, ${last!.id}, now())`;
  await say(1, 4, 2);
  // user 5 has read everything: no unread rows at all
  await say(1, 5, 2, true);
  await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
    select 1, u, 'to many' from unnest(${db.sql.array(MANY)}::bigint[]) u,
      generate_series(1, 1 + u::int % 4)`;
}

Deno.test("after migration 6 every user's first login reports the v1.1 unread counts, before and after the background pass, which ends and counts nobody twice", async () => {
  const db = await createTestDatabase();
  const holder = postgres(db.url, { max: 1, onnotice: () => {} });
  let t: TestServer | undefined;
  const release = Promise.withResolvers<void>();
  let held: Promise<unknown> | undefined;
  try {
    await migrateToV1_1(db);
    await seedV1_1Mailboxes(db);
    const v1_1 = await v1_1UnreadCounts(db.sql);
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((u) => expectedUnread(v1_1, u)),
      [
        { unread_count: 5, unread_by_friend: { "2": 3, "3": 2 } },
        { unread_count: 2, unread_by_friend: { "1": 2 } },
        { unread_count: 0, unread_by_friend: {} },
        { unread_count: 2, unread_by_friend: { "1": 2 } },
        { unread_count: 0, unread_by_friend: {} },
      ],
      "the seeded mailboxes, as v1.1 counts them",
    );

    assert.deepEqual(await migrate(db.sql), MIGRATIONS.map((m) => m.version).filter((v) => v > 5));
    // The background pass finds its progress row locked and waits (it skips a locked row).
    const locked = Promise.withResolvers<void>();
    held = holder.begin(async (tx) => {
      await tx`select 1 from chat_sequence_start for update`;
      locked.resolve();
      await release.promise;
    });
    await locked.promise;
    t = await startTestServer({ db });
    // A message from the game after the migration, before user 4 signs in: counted on top.
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 values (1, 4, 'after the migration')`;
    const now: Counts = structuredClone(v1_1);
    now["4"]!["1"] = 3;

    const early = [1, 2, 3, 4, 5, MANY[0]!, MANY[59]!, MANY.at(-1)!];
    for (const user of early) {
      const [frame, client] = await signIn(t, user);
      assert.deepEqual(unreadOf(frame), expectedUnread(now, user), `user ${user} before the pass`);
      await client.close();
    }
    const [progress] = await db.sql`select backfill_next_user::int as next, backfill_done as done
                                    from chat_sequence_start`;
    assert.deepEqual({ ...progress }, { next: 0, done: false }, "the pass has not started");

    release.resolve();
    await held;
    await eventually("the background pass ends", async () => {
      const [row] = await db.sql`select backfill_done from chat_sequence_start`;
      return row!.backfill_done === true;
    }, 30_000);
    assert.deepEqual(await counters(db.sql), now, "every counter is counted once");
    const [notReady] = await db.sql`select count(*)::int as n from chat_user_state s
      where not s.counts_ready and exists (select 1 from messages m
        where m.recipient_user_id = s.user_id and not m.is_read)`;
    assert.equal(notReady!.n, 0, "every user with unread rows is counted");
    for (const user of [...early, 2, MANY[1]!, MANY[100]!]) {
      const [frame, client] = await signIn(t, user);
      assert.deepEqual(unreadOf(frame), expectedUnread(now, user), `user ${user} after the pass`);
      await client.close();
    }
  } finally {
    release.resolve();
    await held?.catch(() => {});
    await holder.end();
    await t?.close();
    await db.drop();
  }
});

interface GameWriter {
  committed: number;
  errors: string[];
  done: Promise<void>;
}

/**
 * A game backend inserting in a loop until `stop`: `kind` picks plain
 * autocommit single-row inserts, autocommit multi-row inserts, or open
 * transactions that insert, wait, and insert again (or wait, then insert).
 * Its connection waits for a lock at most `lockTimeoutMs`.
 */
function gameWriter(
  url: string,
  kind: "row" | "rows" | "open" | "late",
  users: [number, number],
  lockTimeoutMs: number,
  stop: { now: boolean },
): GameWriter {
  const sql = postgres(url, {
    max: 1,
    onnotice: () => {},
    connection: { lock_timeout: lockTimeoutMs },
  });
  const [a, b] = users;
  const writer: GameWriter = { committed: 0, errors: [], done: Promise.resolve() };
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  writer.done = (async () => {
    try {
      for (let i = 0; !stop.now; i++) {
        const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
        try {
          if (kind === "row") {
            await sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                      values (${from}, ${to}, 'row')`;
            writer.committed += 1;
          } else if (kind === "rows") {
            await sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                      values (${from}, ${to}, 'r1'), (${to}, ${from}, 'r2'), (${from}, ${to}, 'r3')`;
            writer.committed += 3;
          } else if (kind === "open") {
            await sql.begin(async (tx) => {
              await tx`insert into messages (sender_user_id, recipient_user_id, message_text)
                       values (${from}, ${to}, 'open 1')`;
              await pause(15);
              await tx`insert into messages (sender_user_id, recipient_user_id, message_text)
                       values (${to}, ${from}, 'open 2')`;
            });
            writer.committed += 2;
          } else {
            await sql.begin(async (tx) => {
              await tx`select 1`;
              await pause(10);
              await tx`insert into messages (sender_user_id, recipient_user_id, message_text)
                       values (${from}, ${to}, 'late')`;
            });
            writer.committed += 1;
          }
        } catch (err) {
          writer.errors.push(err instanceof Error ? err.message : String(err));
        }
      }
    } finally {
      await sql.end();
    }
  })();
  return writer;
}

Deno.test("the trigger swap has no window: while migration 6 runs beside the game's inserts, every message after the sequence start gets one update for each user and none before it, and no insert fails", async () => {
  const db = await createTestDatabase();
  const migrator = postgres(db.url, { max: 1, onnotice: () => {} });
  const stop = { now: false };
  const lockTimeoutMs = 1000;
  let writers: GameWriter[] = [];
  try {
    await migrateToV1_1(db);
    writers = [
      gameWriter(db.url, "row", [1, 2], lockTimeoutMs, stop),
      gameWriter(db.url, "rows", [2, 3], lockTimeoutMs, stop),
      gameWriter(db.url, "open", [3, 4], lockTimeoutMs, stop),
      gameWriter(db.url, "late", [4, 1], lockTimeoutMs, stop),
      gameWriter(db.url, "open", [5, 6], lockTimeoutMs, stop),
    ];
    const committed = () => writers.reduce((s, w) => s + w.committed, 0);
    await eventually("the game has inserted", () => committed() >= 100, 30_000);
    const retries: string[] = [];
    await migrate(migrator, {
      lockTimeoutMs,
      onRetry: (version, attempt, error) => retries.push(`${version}#${attempt}: ${error}`),
    });
    const atMigration = committed();
    await eventually("the game inserts after it", () => committed() >= atMigration + 100, 30_000);
    stop.now = true;
    await Promise.all(writers.map((w) => w.done));

    assert.deepEqual(writers.flatMap((w) => w.errors), [], "every insert succeeded");
    const [total] = await db.sql`select count(*)::int as n from messages`;
    assert.equal(total!.n, committed());
    const rows = await db.sql<
      { after: boolean; sender: number; recipient: number; messages: number }[]
    >`
      select m.message_id > s.last_message_id as after,
             (select count(*)::int from chat_updates u where u.user_id = m.sender_user_id
                and u.message_id = m.message_id and u.kind = 'message') as sender,
             (select count(*)::int from chat_updates u where u.user_id = m.recipient_user_id
                and u.message_id = m.message_id and u.kind = 'message') as recipient,
             count(*)::int as messages
      from messages m cross join chat_sequence_start s
      group by 1, 2, 3 order by 1`;
    const before = rows.filter((r) => !r.after);
    const after = rows.filter((r) => r.after);
    assert.deepEqual(before.map((r) => [r.sender, r.recipient]), [[0, 0]], "none before");
    assert.deepEqual(after.map((r) => [r.sender, r.recipient]), [[1, 1]], "one each after");
    assert.ok(before[0]!.messages >= 100 && after[0]!.messages >= 100, JSON.stringify(rows));
    const [updates] = await db.sql`select count(*)::int as n from chat_updates`;
    assert.equal(updates!.n, 2 * after[0]!.messages, "no other updates");
    const gaps = await db.sql`select user_id::int, count(*)::int as n, max(seq)::int as top
      from chat_updates group by user_id having count(*) <> max(seq) or min(seq) <> 1`;
    assert.deepEqual([...gaps], [], "each user's seqs are 1..n");
    // Retries (a game transaction held the table past the lock timeout) are allowed, not needed.
    assert.ok(retries.length <= 2, retries.join("; "));
  } finally {
    stop.now = true;
    await Promise.all(writers.map((w) => w.done.catch(() => {})));
    await migrator.end();
    await db.drop();
  }
});

Deno.test("sequences start at the migration: a user's first update after it is seq 1, and older messages stay reachable through history and the v1.1 sync", async () => {
  const db = await createTestDatabase();
  let t: TestServer | undefined;
  try {
    await migrateToV1_1(db);
    await db.seed({ users: [1, 2], friends: [[1, 2]] });
    const old: number[] = [];
    for (const [from, to, text] of [[1, 2, "old 1"], [2, 1, "old 2"], [1, 2, "old 3"]] as const) {
      const [row] = await db.sql`insert into messages (sender_user_id, recipient_user_id,
        message_text) values (${from}, ${to}, ${text}) returning message_id`;
      old.push(Number(row!.message_id));
    }
    t = await startTestServer({ db });
    const [bobAuth, bob] = await signIn(t, 2);
    assert.equal(bobAuth.seq, 0, "no update yet");
    assert.equal(bobAuth.last_message_id, old.at(-1));
    const [aliceAuth, alice] = await signIn(t, 1);
    assert.equal(aliceAuth.seq, 0);

    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "new" });
    const sent = await alice.next("message_sent");
    const live = await bob.next("chat_message");
    assert.equal(sent.seq, 1, "the sender's first update");
    assert.equal(live.seq, 1, "the recipient's first update");
    const newId = live.message_id as number;

    bob.send({ type: "sync", after_seq: 0 });
    const synced = await bob.next("sync_result");
    assert.deepEqual(
      (synced.updates as Frame[]).map((u) => [u.type, u.seq, u.message_id]),
      [["chat_message", 1, newId]],
      "sync by seq holds the updates since the migration only",
    );
    bob.send({ type: "history", friend_user_id: 1 });
    const history = await bob.next("history_result");
    assert.deepEqual(
      (history.messages as Frame[]).map((m) => [m.message_id, m.message_text]),
      [[newId, "new"], [old[2], "old 3"], [old[1], "old 2"], [old[0], "old 1"]],
    );
    bob.send({ type: "sync", after_message_id: 0 });
    const v1_1 = await bob.next("sync_result");
    assert.deepEqual(
      (v1_1.messages as Frame[]).map((m) => m.message_id),
      [...old, newId],
      "the v1.1 sync reaches the older messages too",
    );
  } finally {
    await t?.close();
    await db.drop();
  }
});
