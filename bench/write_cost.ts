/**
 * @module write_cost
 * What the writer's statement costs Postgres per message, without the rest of
 * the server: a fresh database with this tree's migrations, `USERS` users
 * signed in once (their state rows), then `BATCHES` batches of 64 messages
 * between random friends (a fixed seed; half with a client id) through
 * `insertRows` on one connection, as the writer sends them. Printed per
 * message: shared buffers (hit + read, `pg_stat_database`), the backend's CPU
 * (user + system, from `/proc`; also per batch), and the share of
 * `chat_user_state` and `chat_unread` updates that were HOT (no new index
 * entry); then, per call, the time spent in each SQL function the statement
 * calls (`track_functions`), which splits a batch's cost between the insert
 * and the numbering. Buffers do not depend on the machine's load; the CPU
 * does, a little (caches). A batch of 1 shows the fixed cost of a batch (what
 * a message costs at low rates), 64 or 256 the cost per message under load.
 *
 *   deno run -A bench/write_cost.ts [batches=400] [users=2000] [batch=64]
 *
 * Run it in each tree (`git archive REV | tar -x`, this file copied in) for
 * a before → after. Writes nothing but its own database, dropped at the end.
 */

import postgres from "postgres";
import { insertRows } from "../src/store/postgres/message_insert.ts";
import { migrate } from "../src/store/postgres/migrations.ts";
import { WRITER_SETTINGS } from "../src/store/postgres/repository.ts";
import { createTestDatabase } from "../tests/support/db.ts";

const BATCHES = Number(Deno.args[0] ?? 400);
const USERS = Number(Deno.args[1] ?? 2000);
const BATCH = Number(Deno.args[2] ?? 64);
const FRIENDS = 20;
if (
  !Number.isInteger(BATCHES) || BATCHES < 1 || !Number.isInteger(USERS) || USERS < 2 ||
  !Number.isInteger(BATCH) || BATCH < 1 || BATCH > 256
) {
  throw new RangeError("write_cost: batches ≥ 1, users ≥ 2, 1 ≤ batch ≤ 256, whole numbers");
}

const db = await createTestDatabase();
// the writer's own connection settings; function times for the split
const sql = postgres(db.url, {
  max: 1,
  connection: { ...WRITER_SETTINGS, track_functions: "all" },
  onnotice: () => {},
});

/** A small seeded generator (mulberry32), so both trees get the same messages. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Cost {
  buffers: number;
  cpuTicks: number;
  upd: Record<string, [number, number]>;
  /** Per SQL function: calls and total ms (its own time and what it calls). */
  fns: Record<string, [number, number]>;
}

async function cost(pid: number): Promise<Cost> {
  await sql`select pg_stat_force_next_flush()`;
  await sql`select 1`;
  await new Promise((r) => setTimeout(r, 200));
  const [db] = await sql<[{ b: string }]>`
    select (blks_hit + blks_read)::text as b from pg_stat_database where datname = current_database()`;
  const tables = await sql<{ relname: string; upd: string; hot: string }[]>`
    select relname, n_tup_upd::text as upd, n_tup_hot_upd::text as hot from pg_stat_user_tables
    where relname in ('chat_user_state', 'chat_unread')`;
  const fns = await sql<{ funcname: string; calls: string; ms: number }[]>`
    select funcname, calls::text, total_time as ms from pg_stat_user_functions`;
  const stat = (await Deno.readTextFile(`/proc/${pid}/stat`)).split(") ")[1]!.split(" ");
  return {
    buffers: Number(db.b),
    cpuTicks: Number(stat[11]) + Number(stat[12]),
    upd: Object.fromEntries(tables.map((t) => [t.relname, [Number(t.upd), Number(t.hot)]])),
    fns: Object.fromEntries(fns.map((f) => [f.funcname, [Number(f.calls), f.ms]])),
  };
}

try {
  await migrate(sql);
  const next = random(19);
  for (let u = 1; u <= USERS; u++) await sql`select * from chat_mailbox(${u})`;
  const far = () => new Date(Date.now() + 3600_000);
  let sent = 0;
  const batch = () =>
    Array.from({ length: BATCH }, () => {
      const sender = 1 + Math.floor(next() * USERS);
      const recipient = 1 + (sender + Math.floor(next() * FRIENDS)) % USERS;
      sent++;
      return {
        senderUserId: sender,
        recipientUserId: recipient,
        messageText: `cost ${sent}`,
        clientMessageId: sent % 2 ? `c-${sent}` : undefined,
      };
    });
  // warm the caches and the functions' plans
  for (let i = 0; i < 50; i++) await insertRows(sql, batch(), far());
  const [{ pid }] = await sql<[{ pid: number }]>`select pg_backend_pid() as pid`;
  const before = await cost(pid);
  const t0 = performance.now();
  let busy = 0;
  for (let i = 0; i < BATCHES; i++) {
    const out = await insertRows(sql, batch(), far());
    busy += out.rows.filter((r) => r.kind === "busy").length;
  }
  const ms = performance.now() - t0;
  const after = await cost(pid);
  const n = BATCHES * BATCH;
  const tick = 1e6 / 100; // µs per clock tick (CLK_TCK 100)
  const hot = (t: string) => {
    const upd = after.upd[t]![0] - before.upd[t]![0];
    const h = after.upd[t]![1] - before.upd[t]![1];
    return `${t} updates ${upd}, HOT ${(100 * h / Math.max(upd, 1)).toFixed(1)} %`;
  };
  console.log(
    `${n} messages in ${BATCHES} batches of ${BATCH} (${USERS} users, ${busy} busy), ` +
      `${(ms / BATCHES).toFixed(2)} ms per batch: ` +
      `${((after.buffers - before.buffers) / n).toFixed(1)} shared buffers/msg, ` +
      `Postgres backend ${((after.cpuTicks - before.cpuTicks) * tick / n).toFixed(1)} µs CPU/msg ` +
      `(${((after.cpuTicks - before.cpuTicks) * tick / BATCHES).toFixed(0)} per batch); ` +
      `${hot("chat_user_state")}; ${hot("chat_unread")}`,
  );
  const split = Object.entries(after.fns).flatMap(([name, [calls, total]]) => {
    const [calls0, total0] = before.fns[name] ?? [0, 0];
    return calls > calls0 ? [`${name} ${((total - total0) * 1000 / BATCHES).toFixed(0)} µs`] : [];
  });
  console.log(`in SQL functions, per batch (wall time, callees included): ${split.join(", ")}`);
} finally {
  await sql.end();
  await db.drop();
}
