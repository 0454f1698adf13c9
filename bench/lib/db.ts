/**
 * @module db
 * The benchmark database: created fresh with the server's own migrations,
 * seeded with the graph of `layout.ts` in a few multi-row statements,
 * observed through `pg_stat_*`, and dropped at the end.
 */

import postgres, { type Sql } from "postgres";
import { migrate } from "../../src/store/postgres/migrations.ts";
import { insertRows } from "../../src/store/postgres/message_insert.ts";
import { FRIEND_BASE, FRIENDS_PER_HUB, HUB_BASE, HUBS, PAIR_USERS } from "./layout.ts";

export interface BenchDatabase {
  name: string;
  url: string;
  sql: Sql;
  drop(): Promise<void>;
}

/** Creates `bench_<random>` on the server of `adminUrl`, migrates and seeds it. */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.href, { max: 2, onnotice: () => {} });
  let dropped = false;
  const db: BenchDatabase = {
    name,
    url: url.href,
    sql,
    async drop() {
      if (dropped) return;
      dropped = true;
      await sql.end({ timeout: 2 }).catch(() => {});
      const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    },
  };
  try {
    await migrate(sql);
    await seed(sql);
  } catch (err) {
    await db.drop();
    throw err;
  }
  return db;
}

async function seed(sql: Sql): Promise<void> {
  const lastFriend = FRIEND_BASE + HUBS * FRIENDS_PER_HUB;
  await sql`insert into users (user_id, username)
            select g, 'bench' || g from generate_series(1, ${PAIR_USERS}::bigint) g
            union all
            select g, 'hub' || g from generate_series(${HUB_BASE + 1}::bigint, ${
    HUB_BASE + HUBS
  }::bigint) g
            union all
            select g, 'fan' || g from generate_series(${
    FRIEND_BASE + 1
  }::bigint, ${lastFriend}::bigint) g`;
  // Pairs 1–2, 3–4, ...; hub friendships alternate direction, as either side may have asked.
  await sql`insert into friendships (requester_user_id, recipient_user_id, status)
            select g, g + 1, 'approved' from generate_series(1, ${PAIR_USERS}::bigint, 2) g
            union all
            select case when g % 2 = 0 then hub else g end, case when g % 2 = 0 then g else hub end, 'approved'
            from (select g, ${HUB_BASE + 1}::bigint + (g - ${
    FRIEND_BASE + 1
  }) / ${FRIENDS_PER_HUB} as hub
                  from generate_series(${FRIEND_BASE + 1}::bigint, ${lastFriend}::bigint) g) f`;
  await sql`analyze`;
}

/** Counters of the benchmark database, for deltas over a run. */
export interface DbCounters {
  commits: number;
  messagesInserted: number;
}

export async function dbCounters(db: BenchDatabase): Promise<DbCounters> {
  const [row] = await db.sql<{ commits: string; inserted: string | null }[]>`
    select d.xact_commit as commits,
           (select n_tup_ins from pg_stat_user_tables where relname = 'messages') as inserted
    from pg_stat_database d where d.datname = current_database()`;
  return { commits: Number(row?.commits ?? NaN), messagesInserted: Number(row?.inserted ?? NaN) };
}

/**
 * Process ids of the server's connections to the benchmark database (for their CPU time): the
 * chat's pool and the events webhook's own two.
 */
export async function backendPids(db: BenchDatabase): Promise<number[]> {
  const rows = await db.sql<{ pid: number }[]>`
    select pid from pg_stat_activity
    where datname = current_database()
      and application_name in ('geobeasts-chat', 'geobeasts-chat-events')`;
  return rows.map((r) => r.pid);
}

export interface QueryPlan {
  name: string;
  executionMs: number;
  planningMs: number;
  plan: string;
}

/**
 * `EXPLAIN (ANALYZE, BUFFERS)` of the repository's statements (the look-ups
 * copied from `src/store/postgres/repository.ts`; keep them in step when it
 * changes; the batch insert captured as sent), each run `runs`
 * times with the median execution time kept. The insert runs in a
 * transaction that is rolled back.
 */
export async function explainRepositoryQueries(db: BenchDatabase, runs = 5): Promise<QueryPlan[]> {
  const sql = db.sql;
  const batch = 64;
  const senders = Array.from({ length: batch }, (_, i) => 2 * (i % 100) + 1);
  const queries: { name: string; text: string; params: unknown[] }[] = [
    {
      name: "tokenAccess (batch of 64 logins)",
      text: `select u.user_id::text as id,
            (extract(epoch from r.revoked_at) * 1000)::float8 as revoked_ms
          from users u left join chat_token_revocations r on r.user_id = u.user_id
          where u.user_id = any($1::bigint[]) and u.active`,
      params: [senders],
    },
    {
      name: "relation (batch of 64 pairs)",
      text: `select k.s::text as s, k.r::text as r,
            exists (select 1 from friendships f
                    where f.status = 'approved'
                      and ((f.requester_user_id = k.s and f.recipient_user_id = k.r)
                        or (f.requester_user_id = k.r and f.recipient_user_id = k.s))
            ) as friends,
            exists (select 1 from blocks b where b.blocker_user_id = k.r and b.blocked_user_id = k.s
            ) as blocked
          from unnest($1::bigint[], $2::bigint[]) as k(s, r)`,
      params: [senders, senders.map((s) => s + 1)],
    },
    {
      name: "friendIds (hub, 50 friends)",
      text: `select requester_user_id::text as a, recipient_user_id::text as b from friendships
          where status = 'approved'
            and (requester_user_id = any($1::bigint[]) or recipient_user_id = any($1::bigint[]))`,
      params: [[HUB_BASE + 1]],
    },
  ];
  queries.push({
    name: `storeMessage batch of ${batch} (rolled back)`,
    ...await capturedInsert(db.url, senders),
  });
  const plans: QueryPlan[] = [];
  for (const query of queries) {
    const results: QueryPlan[] = [];
    for (let i = 0; i < runs; i++) {
      let rows: { "QUERY PLAN": string }[] = [];
      // Thrown to roll the transaction back: EXPLAIN ANALYZE really inserts.
      const rollback = new Error("rollback");
      await sql.begin(async (tx) => {
        rows = await tx.unsafe<{ "QUERY PLAN": string }[]>(
          `explain (analyze, buffers) ${query.text}`,
          query.params as never[],
        );
        throw rollback;
      }).catch((err) => {
        if (err !== rollback) throw err;
      });
      const plan = rows.map((r) => r["QUERY PLAN"]).join("\n");
      results.push({
        name: query.name,
        executionMs: Number(/Execution Time: ([\d.]+)/.exec(plan)?.[1] ?? NaN),
        planningMs: Number(/Planning Time: ([\d.]+)/.exec(plan)?.[1] ?? NaN),
        plan,
      });
    }
    results.sort((a, b) => a.executionMs - b.executionMs);
    plans.push(results[Math.floor(results.length / 2)]!);
  }
  return plans;
}

/**
 * The writer's batch insert exactly as `insertRows` sends it (text and
 * parameters captured from postgres.js), so this plan cannot drift from
 * `src/store/postgres/message_insert.ts`.
 */
async function capturedInsert(
  url: string,
  senders: number[],
): Promise<{ text: string; params: unknown[] }> {
  let sent: { text: string; params: unknown[] } | undefined;
  const capture = postgres(url, {
    max: 1,
    onnotice: () => {},
    debug: (_connection, query, parameters) => {
      if (query.includes("chat_lock_message_ids")) sent = { text: query, params: parameters };
    },
  });
  // A deadline already past: the statement is sent whole but inserts nothing.
  const past = new Date(0);
  try {
    await capture`select 1`; // array types are fetched before the first array parameter
    await insertRows(
      capture,
      senders.map((s, i) => ({
        senderUserId: s,
        recipientUserId: s + 1,
        messageText: `explain analyze message ${i}`,
        clientMessageId: crypto.randomUUID(),
      })),
      past,
    );
  } finally {
    await capture.end();
  }
  if (sent === undefined) throw new Error("the batch insert was not captured");
  // Explained with a deadline in the future, so the plan shows the insert itself.
  const future = new Date(Date.now() + 60_000);
  const isPast = (p: unknown) =>
    (p instanceof Date && p.getTime() === 0) || p === past.toISOString();
  return { text: sent.text, params: sent.params.map((p) => isPast(p) ? future : p) };
}

/** Whether `pg_stat_statements` can be read here (it needs `shared_preload_libraries`). */
export async function pgStatStatementsAvailable(db: BenchDatabase): Promise<string> {
  try {
    const [row] = await db.sql<{ setting: string }[]>`
      select setting from pg_settings where name = 'shared_preload_libraries'`;
    if (!(row?.setting ?? "").includes("pg_stat_statements")) {
      return "not loaded (shared_preload_libraries is empty; loading it needs a PostgreSQL restart)";
    }
    return "loaded";
  } catch (err) {
    return `unknown: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** Server-wide settings that shape the insert cost. */
export async function postgresSettings(db: BenchDatabase): Promise<Record<string, string>> {
  const rows = await db.sql<{ name: string; setting: string }[]>`
    select name, setting from pg_settings
    where name in ('synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections',
                   'commit_delay', 'server_version')`;
  return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
}
