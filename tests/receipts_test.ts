/**
 * Read and delivered receipts between two real nodes (docs/protocol.md, v1.1): each reaches the
 * right sockets once, and nothing is sent when nothing changed. Users 1–2 and 3–1 are friends.
 */

import assert from "node:assert/strict";
import type { TestClient } from "./support/client.ts";
import { CLUSTER_KINDS, nodesTest } from "./support/cluster.ts";
import { countMessages } from "./support/db.ts";

async function say(from: TestClient, to: number, text: string): Promise<number> {
  from.send({ type: "chat_message", recipient_user_id: to, message_text: text });
  return ((await from.next("message_sent")).data as { message_id: number }).message_id;
}

for (const kind of CLUSTER_KINDS) {
  nodesTest(
    kind,
    "a read receipt reaches the friend's devices and every device of the reader on both nodes, once",
    {},
    async ([a, b]) => {
      const bobOnA = await a!.connectAs(2);
      const bobOnB = await b!.connectAs(2);
      const aliceReading = await a!.connectAs(1);
      const aliceOther = await b!.connectAs(1);
      const carol = await b!.connectAs(3);
      const first = await say(bobOnA, 1, "one");
      const second = await say(bobOnA, 1, "two");
      aliceReading.send({ type: "read", friend_user_id: 2, up_to_message_id: second });
      const receipts = [];
      for (const client of [bobOnA, bobOnB, aliceOther, aliceReading]) {
        receipts.push(await client.next("read"));
      }
      const [receipt] = receipts;
      assert.equal(receipt!.user_id, 1);
      assert.equal(receipt!.friend_user_id, 2);
      assert.equal(receipt!.up_to_message_id, second);
      assert.match(String(receipt!.read_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(receipt!.seq, 3, "two messages, then the receipt, in both sequences");
      for (const other of receipts) assert.deepEqual(other, receipt);
      aliceReading.send({ type: "read", friend_user_id: 2, up_to_message_id: first });
      for (const client of [bobOnA, bobOnB, aliceOther, aliceReading, carol]) {
        assert.deepEqual(await client.drainFor(300, "read"), [], "once, and not to others");
      }
      assert.equal(await countMessages(a!.db.sql, { isRead: true }), 2);
    },
  );

  nodesTest(
    kind,
    "the first delivered from any device reaches every device of the sender on both nodes, once",
    {},
    async ([a, b]) => {
      const alicePhone = await a!.connectAs(1);
      const aliceLaptop = await b!.connectAs(1);
      const bobOnA = await a!.connectAs(2);
      const bobOnB = await b!.connectAs(2);
      const id = await say(alicePhone, 2, "hello");
      await bobOnA.next("chat_message");
      await bobOnB.next("chat_message");
      bobOnA.send({ type: "delivered", message_id: id });
      bobOnB.send({ type: "delivered", message_id: id });
      for (const client of [alicePhone, aliceLaptop]) {
        assert.deepEqual(await client.next("delivered"), {
          type: "delivered",
          message_id: id,
          user_id: 2,
          seq: 2, // the message was 1 in alice's sequence
        });
      }
      for (const client of [alicePhone, aliceLaptop]) {
        assert.deepEqual(await client.drainFor(300, "delivered"), [], "once per message");
      }
      // v1.2: each of bob's devices learns it was shown (the other stops showing it as new;
      // the one that sent the winning receipt gets its own update's number), once.
      for (const bob of [bobOnA, bobOnB]) {
        assert.deepEqual(await bob.drainFor(300, "delivered"), [
          { type: "delivered", message_id: id, user_id: 2, seq: 2 },
        ]);
      }
      assert.deepEqual(await bobOnA.drainFor(0, "error"), []);
      assert.deepEqual(await bobOnB.drainFor(0, "error"), []);
      const [row] = await a!.db.sql`select delivered_at from messages where message_id = ${id}`;
      assert.ok(row!.delivered_at instanceof Date);
    },
  );

  nodesTest(
    kind,
    "delivered for a message not addressed to the user is invalid_field and tells no one",
    {},
    async ([a, b]) => {
      const alice = await a!.connectAs(1);
      const carol = await b!.connectAs(3);
      const id = await say(alice, 2, "for bob only");
      carol.send({ type: "delivered", message_id: id });
      const error = await carol.next("error");
      assert.equal(error.code, "invalid_field");
      assert.match(String(error.message), /message_id/);
      alice.send({ type: "delivered", message_id: id }); // the sender is not the recipient
      assert.equal((await alice.next("error")).code, "invalid_field");
      carol.send({ type: "delivered", message_id: id + 1000 });
      assert.equal((await carol.next("error")).code, "invalid_field");
      assert.deepEqual(await alice.drainFor(300, "delivered"), []);
    },
  );
}
