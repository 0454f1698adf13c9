/**
 * One user's updates are numbered in commit order with no gap
 * (docs/protocol.md, "Updates"): two nodes and the game backend's plain
 * INSERTs write to one recipient at once, and a reader that keeps asking for
 * that user's updates above the largest seq it has seen (what `sync
 * {after_seq}` does) misses nothing and sees 1, 2, 3, … with no hole.
 */

import assert from "node:assert/strict";
import type { StoreResult } from "../src/store/repository.ts";
import type { PostgresRepository } from "../src/store/postgres/repository.ts";
import { connectRepository, createTestDatabase } from "./support/db.ts";

const connect = (url: string) => connectRepository(url, { statementTimeoutMs: 10_000 });

Deno.test("a reader that reads a user's seqs above the last it saw never misses one and finds no gap, whoever inserts", async () => {
  const db = await createTestDatabase();
  const nodeA = await connect(db.url);
  const nodeB = await connect(db.url);
  try {
    let writing = true;
    // Each node: bursts from several senders, every sender's messages queued in order.
    const node = async (repository: PostgresRepository, senders: number[]) => {
      const perSender = new Map<number, number[]>(senders.map((s) => [s, []]));
      for (let burst = 0; burst < 40; burst++) {
        const stores: [number, Promise<StoreResult>][] = [];
        for (let k = 0; k < 5; k++) {
          for (const sender of senders) {
            stores.push([
              sender,
              repository.storeMessage({
                senderUserId: sender,
                recipientUserId: 1000,
                messageText: `burst ${burst} item ${k}`,
                clientMessageId: k % 2 === 0 ? `${burst}-${k}` : undefined,
              }),
            ]);
          }
        }
        for (const [sender, stored] of stores) {
          perSender.get(sender)!.push((await stored).message.messageId);
        }
      }
      return perSender;
    };
    // The game backend: plain INSERTs, some in transactions that stay open a moment after them.
    const backend = (async () => {
      let n = 0;
      while (writing) {
        if (n % 2 === 0) {
          await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                       values (900, 1000, ${`php ${n}`})`;
        } else {
          await db.sql.begin(async (tx) => {
            await tx`insert into messages (sender_user_id, recipient_user_id, message_text)
                     values (900, 1000, ${`php ${n}`})`;
            await tx`select pg_sleep(0.003)`;
          });
        }
        n++;
      }
      return n;
    })();
    // The reader: what `sync {after_seq}` does for user 1000, as fast as it can.
    const seen: number[] = [];
    const holes: number[] = [];
    let last = 0;
    const read = async () => {
      const rows = await db.sql<{ seq: string }[]>`
        select u.seq::text as seq from chat_updates u
        where u.user_id = 1000 and u.seq > ${last} order by u.seq`;
      for (const row of rows) {
        const seq = Number(row.seq);
        if (seq !== last + 1) holes.push(last + 1);
        seen.push(seq);
        last = seq;
      }
    };
    const reader = (async () => {
      while (writing) await read();
    })();

    const [a, b] = await Promise.all([node(nodeA, [1, 2, 3]), node(nodeB, [4, 5, 6])]);
    writing = false;
    const backendRows = await backend;
    await reader;
    await read();

    const all = await db.sql<{ id: string }[]>`select message_id::text as id from messages`;
    assert.ok(backendRows > 10, `the backend wrote only ${backendRows} rows during the race`);
    assert.equal(all.length, 2 * 40 * 5 * 3 + backendRows);
    assert.deepEqual(holes, [], "seqs that became visible after a larger one was read");
    assert.deepEqual(
      seen,
      Array.from({ length: all.length }, (_, i) => i + 1),
      "every message to user 1000 is one update, numbered 1..N",
    );
    for (const perSender of [a, b]) {
      for (const [sender, ids] of perSender) {
        assert.deepEqual(ids, [...ids].sort((x, y) => x - y), `sender ${sender}'s ids in order`);
      }
    }
  } finally {
    await nodeA.close();
    await nodeB.close();
    await db.drop();
  }
});
