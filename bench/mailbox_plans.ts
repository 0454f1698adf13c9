/**
 * @module mailbox_plans
 * Builds a `messages` table of a million rows (user 1 has a large mailbox:
 * `MAILBOX` of them are to or from user 1, spread over the whole table; users
 * 20001 and 20002 wrote the first tenth of the table to each other and
 * nothing since, a heavy user who went quiet), applies the migrations to it
 * as to a live game database, then prints `EXPLAIN (ANALYZE, BUFFERS)` of
 * every v1.1 query for both kinds of user and of the writer's insert, and
 * times paging through user 1's whole mailbox with `sync` pages of 500. Then
 * the v1.2 statements (migration 6), for a user with `MAILBOX` unread messages
 * that arrived after the migration (user 30001, from 50 friends) and one with
 * 10 (user 30100): the login (`chat_mailbox`), `sync {after_seq}`, the v1.1
 * sync on the stream, `read` (`chat_mark_read`) and an edit
 * (`chat_change_message`) and the writer's batch, the whole login in one statement
 * (`chat_sign_in`, migration 10), every statement each sends and every statement run
 * inside their plpgsql functions, through `auto_explain` (nested statements,
 * ANALYZE, BUFFERS), and the shared buffers of each login side by side.
 * Writes nothing but its own database, which it drops at the end.
 *
 *   deno run -A bench/mailbox_plans.ts [rows=1000000] [mailbox=100000]
 *
 * The output is Markdown; the "Query plans" section of docs/protocol.md holds a run of it.
 */

import postgres, { type Sql } from "postgres";
import * as mailbox from "../src/store/postgres/mailbox_queries.ts";
import * as updates from "../src/store/postgres/updates_queries.ts";
import { signIn } from "../src/store/postgres/sign_in.ts";
import { insertRows } from "../src/store/postgres/message_insert.ts";
import { flagBatch } from "../src/store/postgres/read_flags.ts";
import { migrate } from "../src/store/postgres/migrations.ts";
import { adminUrl } from "../tests/support/db.ts";
import { explainer } from "../tests/support/explain.ts";
import { POOL_SETTINGS } from "../src/store/postgres/repository.ts";

const ROWS = Number(Deno.args[0] ?? 1_000_000);
const MAILBOX = Number(Deno.args[1] ?? 100_000);
const FRIENDS = 50;
/** The quiet pair: their rows are the first tenth of the table (every one but user 1's). */
const QUIET = 20001;
const QUIET_FRIEND = 20002;
/** v1.2: a user whose `MAILBOX` unread messages came after the migration, from 50 friends. */
const FULL = 30001;
/** v1.2: a user with 10 unread messages, from the first of those friends. */
const FEW = 30100;
const FULL_FRIEND = 30002;

const admin = await adminUrl();
const name = `mailbox_plans_${crypto.randomUUID().slice(0, 8)}`;
const root = postgres(admin, { max: 1, onnotice: () => {} });
await root.unsafe(`create database ${name}`);
const url = new URL(admin);
url.pathname = `/${name}`;

const plans = explainer(url.href, POOL_SETTINGS);
const sql = plans.sql;
const out: string[] = [];
const print = (line = "") => {
  out.push(line);
  console.log(line);
};

try {
  // The game's tables as they are before this server ever ran, then its rows.
  await sql.unsafe(`
    create table users (user_id bigint primary key, username text, active boolean not null default true);
    create table friendships (friendship_id bigserial primary key, requester_user_id bigint not null,
      recipient_user_id bigint not null, status text not null, created_at timestamptz not null default now());
    create table blocks (block_id bigserial primary key, blocker_user_id bigint not null,
      blocked_user_id bigint not null, created_at timestamptz not null default now(),
      unique (blocker_user_id, blocked_user_id));
    create table messages (message_id bigserial primary key, sender_user_id bigint not null,
      recipient_user_id bigint not null, message_text text not null, is_read boolean not null default false,
      sent_at timestamptz not null default now(), read_at timestamptz);`);
  const t0 = performance.now();
  // Spread over time: every 10th row is user 1's (to or from one of 50 friends) until
  // MAILBOX of them exist; the others of the first tenth are between the quiet pair;
  // the rest between 10 000 other users. All read but the last 2 000 of user 1's
  // incoming ones and of the quiet user's.
  await sql.unsafe(`
    insert into users (user_id, username) select g, 'user' || g from generate_series(1, 11000) g;
    insert into messages (sender_user_id, recipient_user_id, message_text, is_read, sent_at)
    select s, r, 'message ' || g, true, now() - make_interval(secs => ${ROWS} - g)
    from (select g,
            case when g % 10 = 0 and g / 10 <= ${MAILBOX}
              then case when g % 20 = 0 then 1 else 2 + (g / 20) % ${FRIENDS} end
              when g <= ${ROWS / 10}
              then case when g % 2 = 0 then ${QUIET} else ${QUIET_FRIEND} end
              else 1000 + g % 10000 end as s,
            case when g % 10 = 0 and g / 10 <= ${MAILBOX}
              then case when g % 20 = 0 then 2 + (g / 20) % ${FRIENDS} else 1 end
              when g <= ${ROWS / 10}
              then case when g % 2 = 0 then ${QUIET_FRIEND} else ${QUIET} end
              else 1000 + (g * 7) % 10000 end as r
          from generate_series(1, ${ROWS}) g) x;
    update messages set is_read = false where message_id in (
      (select message_id from messages where recipient_user_id = 1
       order by message_id desc limit 2000)
      union all
      (select message_id from messages where recipient_user_id = ${QUIET}
       order by message_id desc limit 2000));`);
  print(
    `# ${ROWS} messages, ${MAILBOX} of them to or from user 1, ` +
      `the first ${ROWS / 10} but user 1's between ${QUIET} and ${QUIET_FRIEND}`,
  );
  print();
  print(`- seeded in ${seconds(t0)} s`);
  const t1 = performance.now();
  const applied = await migrate(sql);
  print(`- migrations ${applied.join(",")} on the filled table: ${seconds(t1)} s`);
  // A read of the quiet user's, whose flags are not all set yet: half its unread rows.
  await sql.unsafe(`
    insert into chat_read_marks (reader_user_id, friend_user_id, up_to_message_id, read_at)
    select ${QUIET}, ${QUIET_FRIEND}, message_id, now() from messages
    where recipient_user_id = ${QUIET} and not is_read order by message_id offset 1000 limit 1`);
  await sql.unsafe("vacuum analyze messages");
  const [{ quietId }] = await sql<[{ quietId: string }]>`
    select max(message_id)::text as "quietId" from messages where sender_user_id = ${QUIET}`;
  const [{ maxId }] = await sql<[{ maxId: string }]>`
    select max(message_id)::text as "maxId" from messages where recipient_user_id = 1 or sender_user_id = 1`;
  const [{ midId }] = await sql<[{ midId: string }]>`
    select message_id::text as "midId" from messages where recipient_user_id = 1
    order by message_id offset ${MAILBOX / 4} limit 1`;
  print(`- PostgreSQL ${(await sql`show server_version`)[0]!.server_version}`);
  print();

  await explain(
    "mailboxSummary(1): unread counts and last id",
    (q) => mailbox.mailboxSummary(q, 1),
  );
  await explain(
    "messagesAfter(1, 0, 500): first sync page",
    (q) => mailbox.messagesBetween(q, 1, 0, Number.MAX_SAFE_INTEGER, 500),
  );
  await explain(
    `messagesAfter(1, ${midId}, 500): a sync page in the middle`,
    (q) => mailbox.messagesBetween(q, 1, Number(midId), Number.MAX_SAFE_INTEGER, 500),
  );
  await explain(
    "conversationBefore(1, 2, latest, 50): history, first page",
    (q) => mailbox.conversationBefore(q, 1, 2, undefined, 50),
  );
  await explain(
    `conversationBefore(1, 2, ${midId}, 50): history, further back`,
    (q) => mailbox.conversationBefore(q, 1, 2, Number(midId), 50),
  );
  await explain(
    `markRead(1, 2, ${maxId}) (rolled back)`,
    (q) => mailbox.markRead(q, 1, 2, Number(maxId), new Date(Date.now() + 3600_000)),
  );
  await explain(
    `mailboxSummary(${QUIET}): the quiet user's unread counts and last id`,
    (q) => mailbox.mailboxSummary(q, QUIET),
  );
  await explain(
    `messagesAfter(${QUIET}, ${quietId}, 500): the quiet user's sync after its last message`,
    (q) => mailbox.messagesBetween(q, QUIET, Number(quietId), Number.MAX_SAFE_INTEGER, 500),
  );
  await explain(
    `conversationBefore(${QUIET}, ${QUIET_FRIEND}, latest, 50): the quiet user's history`,
    (q) => mailbox.conversationBefore(q, QUIET, QUIET_FRIEND, undefined, 50),
  );
  await explain(
    `markRead(${QUIET}, ${QUIET_FRIEND}, ${maxId}): the quiet user's read (rolled back)`,
    (q) => mailbox.markRead(q, QUIET, QUIET_FRIEND, Number(maxId), new Date(Date.now() + 3600_000)),
  );
  await explain(
    `flagBatch(${QUIET}, ${QUIET_FRIEND}, 0, 200): one batch of read flags (rolled back)`,
    (q) => flagBatch(q, QUIET, QUIET_FRIEND, 0, 200),
  );
  await explain(
    `markDelivered(1, ${maxId}) (rolled back)`,
    (q) => mailbox.markDelivered(q, 1, Number(maxId), new Date(Date.now() + 3600_000)),
  );
  await explain(
    "inactiveUsers(100 ids)",
    (q) => mailbox.inactiveUsers(q, Array.from({ length: 100 }, (_, i) => i * 97 + 1)),
  );
  await explain("the writer's insert of a batch of 64 (rolled back)", (q) =>
    insertRows(
      q,
      Array.from({ length: 64 }, (_, i) => ({
        senderUserId: 1,
        recipientUserId: 2 + (i % FRIENDS),
        messageText: `batch ${i}`,
        clientMessageId: i % 2 ? `plan-${i}` : undefined,
      })),
      new Date(Date.now() + 3600_000),
    ));

  await v12Plans();

  // Sync of the whole mailbox from 0, 500 at a time, as a client that was away would.
  for (let run = 0; run < 2; run++) {
    const times: number[] = [];
    let after = 0;
    let total = 0;
    const started = performance.now();
    for (;;) {
      const t = performance.now();
      const page = await mailbox.messagesBetween(sql, 1, after, Number.MAX_SAFE_INTEGER, 500);
      times.push(performance.now() - t);
      total += page.messages.length;
      if (!page.hasMore) break;
      after = page.messages.at(-1)!.messageId;
    }
    const elapsed = (performance.now() - started) / 1000;
    times.sort((a, b) => a - b);
    print(
      `sync of user 1's mailbox (run ${run + 1}): ${total} messages in ${times.length} pages of ` +
        `500, ${elapsed.toFixed(2)} s: ${(times.length / elapsed).toFixed(1)} pages/s, ` +
        `${(total / elapsed).toFixed(0)} messages/s; ms per page median ` +
        `${times[Math.floor(times.length / 2)]!.toFixed(1)}, p95 ` +
        `${times[Math.floor(times.length * 0.95)]!.toFixed(1)}, max ${times.at(-1)!.toFixed(1)}`,
    );
  }
} finally {
  await plans.end();
  await root.unsafe(`drop database if exists ${name} with (force)`);
  await root.end();
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

async function explain(title: string, call: Parameters<typeof plans.plan>[0]) {
  const plan = await plans.plan(call, "analyze, buffers, costs off");
  print(`## ${title}`);
  print();
  print("```");
  for (const line of plan) print(line);
  print("```");
  print();
}

/**
 * The v1.2 statements. The unread messages of `FULL` and `FEW` are inserted
 * after the migration as the game backend would (one statement each: the
 * statement trigger numbers them), the counters' background pass is run to
 * its end, and each call runs on one connection with `auto_explain` logging
 * every statement (top-level and nested in plpgsql) with ANALYZE and BUFFERS
 * as notices, in a transaction rolled back afterwards.
 */
async function v12Plans(): Promise<void> {
  const t0 = performance.now();
  await sql.unsafe(`
    insert into users (user_id, username)
      select g, 'user' || g from generate_series(${FULL}, ${FEW}) g on conflict do nothing;
    insert into messages (sender_user_id, recipient_user_id, message_text)
      select ${FULL_FRIEND} + g % ${FRIENDS}, ${FULL}, 'unread ' || g
      from generate_series(1, ${MAILBOX}) g;
    insert into messages (sender_user_id, recipient_user_id, message_text)
      select ${FULL_FRIEND}, ${FEW}, 'unread ' || g from generate_series(1, 10) g;`);
  print(`## v1.2: ${MAILBOX} unread messages to user ${FULL}, 10 to user ${FEW}`);
  print();
  print(
    `- ${MAILBOX + 10} messages inserted by two game statements after migration 6 ` +
      `(the statement trigger numbered them): ${seconds(t0)} s`,
  );
  const t1 = performance.now();
  let passes = 0;
  while (!(await sql<[{ done: boolean }]>`select chat_backfill_counts(50) as done`)[0].done) {
    passes++;
  }
  print(
    `- the counters' background pass over the older rows: ${passes + 1} calls, ${seconds(t1)} s`,
  );
  for (const table of ["messages", "chat_updates", "chat_unread", "chat_user_state"]) {
    await sql.unsafe(`vacuum analyze ${table}`);
  }
  const [{ fullSeq }] = await sql<[{ fullSeq: string }]>`
    select seq::text as "fullSeq" from chat_user_state where user_id = ${FULL}`;
  const [{ lastFromFriend }] = await sql<[{ lastFromFriend: string }]>`
    select max(message_id)::text as "lastFromFriend" from messages
    where recipient_user_id = ${FULL} and sender_user_id = ${FULL_FRIEND}`;
  const [{ midMessage }] = await sql<[{ midMessage: string }]>`
    select message_id::text as "midMessage" from chat_updates
    where user_id = ${FULL} and seq = ${Math.floor(Number(fullSeq) / 2)}`;
  print(`- user ${FULL}'s seq: ${fullSeq}`);
  print();

  const traced = postgres(url.href, {
    max: 1,
    connection: POOL_SETTINGS,
    onnotice: (notice) => logged.push(String(notice.message)),
  });
  const logged: string[] = [];
  const conn = await traced.reserve();
  await conn.unsafe(`load 'auto_explain'`);
  await conn.unsafe(`set auto_explain.log_min_duration = 0;
    set auto_explain.log_analyze = on; set auto_explain.log_buffers = on;
    set auto_explain.log_timing = on; set auto_explain.log_nested_statements = on;
    set auto_explain.log_level = notice`);
  const buffers: string[] = [];
  const signInBuffers: string[] = [];
  const far = () => new Date(Date.now() + 3600_000);
  try {
    const run = async (title: string, call: (q: Sql) => Promise<unknown>) => {
      // once to warm the caches and the function's plans, then the logged run
      for (let pass = 0; pass < 2; pass++) {
        await conn.unsafe("begin");
        logged.length = 0;
        try {
          await call(conn as unknown as Sql);
        } finally {
          await conn.unsafe("rollback");
        }
      }
      print(`### ${title}`);
      print();
      print("```");
      for (const entry of logged) {
        // "duration: …  plan:", "Query Text: …" (one or more lines), then the plan
        const lines = entry.split("\n");
        const planAt = lines.findIndex((l) => /\(cost=|\(actual/.test(l));
        const text = lines.slice(1, planAt).join(" ").replace(/^Query Text:/, "");
        print(`-- ${text.replace(/\s+/g, " ").trim().slice(0, 160)}`);
        print(`-- ${lines[0]!.replace(/\s+plan:$/, "")}`);
        for (const line of lines.slice(planAt)) if (line.trim()) print(line);
      }
      print("```");
      print();
      const top = logged.at(-1) ?? "";
      const hit = /Buffers: shared hit=(\d+)(?: read=(\d+))?/.exec(top);
      return hit ? Number(hit[1]) + Number(hit[2] ?? 0) : NaN;
    };
    for (const user of [FULL, FEW]) {
      const n = await run(
        `login (mailboxSummary → chat_mailbox), user ${user}`,
        (q) => mailbox.mailboxSummary(q, user),
      );
      buffers.push(`user ${user}: ${n} shared buffers`);
    }
    // The whole login in one statement (migration 10): the same counters, plus the token
    // check, friends, settings and last seen.
    for (const user of [FULL, FEW]) {
      const n = await run(
        `login in one statement (signIn → chat_sign_in), user ${user}`,
        (q) => signIn(q, user, Math.floor(Date.now() / 1000)),
      );
      signInBuffers.push(`user ${user}: ${n} shared buffers`);
    }
    await run(
      `sync {after_seq: 0, limit: 500}, user ${FULL} (updatesAfter)`,
      (q) => updates.updatesAfter(q, FULL, 0, 500),
    );
    await run(
      `sync {after_seq: ${Math.floor(Number(fullSeq) / 2)}, limit: 500}, user ${FULL}`,
      (q) => updates.updatesAfter(q, FULL, Math.floor(Number(fullSeq) / 2), 500),
    );
    const [{ last }] = await sql<[{ last: string }]>`
      select last_message_id::text as last from chat_sequence_start`;
    await run(
      `v1.1 sync {after_message_id: ${midMessage}, limit: 100}, user ${FULL} (messagesAfterV11)`,
      (q) => updates.messagesAfterV11(q, FULL, Number(midMessage), 100, Number(last)),
    );
    await run(
      `v1.1 sync {after_message_id: 0, limit: 100}, user 1 (messages from before v1.2)`,
      (q) => updates.messagesAfterV11(q, 1, 0, 100, Number(last)),
    );
    await run(
      `read (chat_mark_read) of ${FULL_FRIEND}'s 2,000, user ${FULL} (rolled back)`,
      (q) => mailbox.markRead(q, FULL, FULL_FRIEND, Number(lastFromFriend), far()),
    );
    await run(
      `edit (chat_change_message) by ${FULL_FRIEND} (rolled back)`,
      (q) =>
        updates.changeMessage(
          q,
          FULL_FRIEND,
          Number(lastFromFriend),
          "edit",
          "edited",
          86400,
          null,
        ),
    );
    await run(
      `the writer's batch of 64 (insertRows → chat_record_messages), from ${FRIENDS} friends to user ${FULL} ` +
        "(rolled back)",
      (q) =>
        insertRows(
          q,
          Array.from({ length: 64 }, (_, i) => ({
            senderUserId: FULL_FRIEND + (i % FRIENDS),
            recipientUserId: FULL,
            messageText: `batch ${i}`,
            clientMessageId: `v12-plan-${i}`,
          })),
          far(),
        ),
    );
  } finally {
    conn.release();
    await traced.end();
  }
  print(
    `- the login's top-level statement (chat_mailbox's statements included): ${buffers.join("; ")}`,
  );
  print(
    `- the one-statement login (chat_sign_in's statements included): ${signInBuffers.join("; ")}`,
  );
  print();
}
