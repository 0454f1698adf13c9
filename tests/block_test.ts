/**
 * What a block hides, on real nodes (docs/protocol.md, "Presence", "Receipts"): besides chat and
 * typing, presence (`online`, `offline`, `online_friends`) and read/delivered receipts, both ways
 * and across nodes. User 1 blocked user 5 (still approved friends); user 3 is a friend of 1
 * without a block, the control that shows each frame was sent at all.
 */

import assert from "node:assert/strict";
import { CLUSTER_KINDS, nodesTest } from "./support/cluster.ts";
import { withoutLastSeen } from "./support/client.ts";

const presenceOf1 = (status: string) => ({ type: "presence", user_id: 1, status });

for (const kind of CLUSTER_KINDS) {
  nodesTest(
    kind,
    "a block hides presence, online_friends and read and delivered receipts both ways, across nodes",
    { users: [1, 3, 5], friends: [[5, 1], [1, 3]] },
    async ([a, b], db) => {
      await db.block(1, 5);
      const ids = await db.sql<{ id: number }[]>`
        insert into messages (sender_user_id, recipient_user_id, message_text)
        values (5, 1, 'from 5'), (1, 5, 'from 1'), (3, 1, 'from 3')
        returning message_id::int as id`;
      const [from5, from1, from3] = ids.map((row) => row.id);
      const eve = await a!.connect(); // the blocked user
      eve.send({ type: "authenticate", auth_token: await a!.token(5) });
      assert.deepEqual((await eve.next("authenticated")).online_friends, []);
      const carol = await a!.connectAs(3);
      const alice = await b!.connect(); // the blocker
      alice.send({ type: "authenticate", auth_token: await b!.token(1) });
      assert.deepEqual((await alice.next("authenticated")).online_friends, [3]);
      assert.deepEqual(await carol.next("presence"), presenceOf1("online"));

      alice.send({ type: "delivered", message_id: from5 });
      alice.send({ type: "read", friend_user_id: 5, up_to_message_id: from5 });
      eve.send({ type: "read", friend_user_id: 1, up_to_message_id: from1 });
      alice.send({ type: "delivered", message_id: from3 });
      alice.send({ type: "read", friend_user_id: 3, up_to_message_id: from3 });
      assert.equal((await carol.next("delivered")).message_id, from3);
      assert.equal((await carol.next("read")).up_to_message_id, from3);
      const second = await b!.connect(); // the blocked user's second device
      second.send({ type: "authenticate", auth_token: await b!.token(5) });
      assert.deepEqual((await second.next("authenticated")).online_friends, []);
      // (alice's own receipts come back to her, with her seq: 5's never do)
      assert.deepEqual(
        (await alice.drainFor(300, "read")).filter((f) => f.user_id !== 1),
        [],
        "5's read does not reach 1",
      );

      await alice.close();
      assert.deepEqual(withoutLastSeen(await carol.next("presence")), presenceOf1("offline"));
      for (const client of [eve, second]) {
        const about1 = (await client.drainFor(300)).filter((f) => f.user_id === 1);
        assert.deepEqual(about1, [], "no presence or receipt of 1 reaches 5");
      }
      const rows = await db.sql`select message_id::int as id, is_read, delivered_at is not null
                                  as delivered from messages order by message_id`;
      assert.deepEqual(
        rows.map((r) => [r.id, r.is_read, r.delivered]),
        [[from5, true, true], [from1, true, false], [from3, true, true]],
        "the receipts are stored all the same",
      );
    },
  );
}
