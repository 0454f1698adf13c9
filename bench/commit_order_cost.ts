/**
 * @module commit_order_cost
 * What "ids in commit order" (migration 3's lock) costs the message writer:
 * the same load with the lock, and with the trigger's and the writer's lock
 * functions replaced by lock-free ones (ids then only from the sequence, as
 * before). For one node and for two nodes writing at once, it measures
 * throughput (all messages queued at once) and the latency of a paced load.
 *
 *   deno run -A bench/commit_order_cost.ts [messages=20000] [rate=1000]
 */

import postgres from "postgres";
import { silentLogger } from "../src/log.ts";
import { PostgresRepository } from "../src/store/postgres/repository.ts";
import { adminUrl } from "../tests/support/db.ts";

const MESSAGES = Number(Deno.args[0] ?? 20_000);
const RATE = Number(Deno.args[1] ?? 1000);

const NO_LOCK = `
  do $$ declare seq text := pg_get_serial_sequence('messages', 'message_id'); begin
    execute format($f$create or replace function chat_assign_message_id() returns trigger
      language plpgsql as $b$ begin new.message_id := nextval(%L::regclass); return new; end $b$ $f$, seq);
  end $$;
  create or replace function chat_lock_message_ids() returns timestamptz
    language sql as $b$ select clock_timestamp() $b$;`;

const admin = await adminUrl();
const root = postgres(admin, { max: 1, onnotice: () => {} });

for (const nodes of [1, 2]) {
  for (const lock of [true, false]) {
    const name = `commit_cost_${crypto.randomUUID().slice(0, 8)}`;
    await root.unsafe(`create database ${name}`);
    const url = new URL(admin);
    url.pathname = `/${name}`;
    const repositories: PostgresRepository[] = [];
    for (let i = 0; i < nodes; i++) {
      repositories.push(
        await PostgresRepository.connect({
          url: url.href,
          poolSize: 2,
          statementTimeoutMs: 30_000,
          relationCacheMs: 0,
          logger: silentLogger,
        }),
      );
    }
    const sql = postgres(url.href, { max: 1, onnotice: () => {} });
    if (!lock) await sql.unsafe(NO_LOCK);
    try {
      const message = (i: number) => ({
        senderUserId: 1 + (i % 100),
        recipientUserId: 200 + (i % 100),
        messageText: `message ${i}`,
        clientMessageId: `c${i}`,
      });
      // Throughput: everything queued at once, spread over the nodes.
      let t = performance.now();
      await Promise.all(
        Array.from(
          { length: MESSAGES },
          (_, i) => repositories[i % nodes]!.storeMessage(message(i)),
        ),
      );
      const throughput = MESSAGES / ((performance.now() - t) / 1000);
      // Latency: RATE messages/s for 3 s, in 10 ms ticks, spread over the nodes.
      const latencies: number[] = [];
      const pending: Promise<void>[] = [];
      const perTick = RATE / 100;
      t = performance.now();
      for (let tick = 0; tick < 300; tick++) {
        for (let k = 0; k < perTick; k++) {
          const i = MESSAGES + tick * perTick + k;
          const sent = performance.now();
          pending.push(
            repositories[i % nodes]!.storeMessage(message(i)).then(() => {
              latencies.push(performance.now() - sent);
            }),
          );
        }
        const next = t + (tick + 1) * 10;
        await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
      }
      await Promise.all(pending);
      latencies.sort((a, b) => a - b);
      const at = (q: number) => latencies[Math.floor(latencies.length * q)]!.toFixed(1);
      console.log(
        `${nodes} node(s), ${lock ? "lock (commit order)" : "no lock (sequence only)"}: ` +
          `${throughput.toFixed(0)} messages/s queued at once; at ${RATE}/s latency ms ` +
          `p50 ${at(0.5)}, p99 ${at(0.99)}, max ${latencies.at(-1)!.toFixed(1)}`,
      );
    } finally {
      await sql.end();
      for (const r of repositories) await r.close();
      await root.unsafe(`drop database if exists ${name} with (force)`);
    }
  }
}
await root.end();
