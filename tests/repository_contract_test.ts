/**
 * One contract for every `ChatRepository`: the in-memory fake and the
 * PostgreSQL implementation must answer alike.
 */

import assert from "node:assert/strict";
import type { ChatRepository, MessageRecord, SnapshotMessage } from "../src/store/repository.ts";
import { ClientMessageIdReusedError } from "../src/store/repository.ts";
import { MemoryRepository } from "../src/store/memory.ts";
import { connectRepository, createTestDatabase } from "./support/db.ts";

interface Fixture {
  repository: ChatRepository;
  addUser(id: number, active?: boolean): Promise<void>;
  befriend(a: number, b: number, status?: string): Promise<void>;
  block(blocker: number, blocked: number): Promise<void>;
  /** The snapshot stored with a report. */
  snapshot(reportId: number): Promise<SnapshotMessage[]>;
  done(): Promise<void>;
}

const implementations: Record<string, () => Promise<Fixture>> = {
  memory: () => {
    const repository = new MemoryRepository();
    return Promise.resolve({
      repository,
      addUser: (id, active) => Promise.resolve(repository.addUser(id, active)),
      befriend: (a, b, status) => Promise.resolve(repository.befriend(a, b, status)),
      block: (x, y) => Promise.resolve(repository.block(x, y)),
      snapshot: (id) => Promise.resolve(repository.reports[id - 1]!.snapshot),
      done: () => repository.close(),
    });
  },
  postgres: async () => {
    const db = await createTestDatabase();
    const repository = await connectRepository(db.url);
    return {
      repository,
      addUser: (id, active) => db.addUser(id, active === undefined ? {} : { active }),
      befriend: (a, b, status) => db.befriend(a, b, status),
      block: (x, y) => db.block(x, y),
      async snapshot(id) {
        const [row] = await db.sql<{ snapshot: SnapshotMessage[] }[]>`
          select snapshot from chat_reports where report_id = ${id}`;
        return row!.snapshot;
      },
      async done() {
        await repository.close();
        await db.drop();
      },
    };
  },
};

for (const [name, make] of Object.entries(implementations)) {
  const contract = (title: string, body: (f: Fixture) => Promise<void>) =>
    Deno.test(`${name} repository: ${title}`, async () => {
      const fixture = await make();
      try {
        await body(fixture);
      } finally {
        await fixture.done();
      }
    });

  contract("only existing active users sign in", async (f) => {
    await f.addUser(1);
    await f.addUser(2, false);
    const now = Math.floor(Date.now() / 1000);
    assert.equal(await f.repository.tokenAccess(1, now), "ok");
    assert.equal(await f.repository.tokenAccess(2, now), "inactive");
    assert.equal(await f.repository.tokenAccess(3, now), "inactive");
  });

  contract(
    "revoked tokens: those issued at or before the revocation are refused, later ones sign in",
    async (f) => {
      for (const id of [1, 2, 3]) await f.addUser(id);
      const at = new Date(1_800_000_000_500); // half a second into a token's second
      await f.repository.revokeTokens([1, 2, 1], at);
      await f.repository.revokeTokens([2], new Date(at.getTime() - 60_000)); // never moves back
      for (const id of [1, 2]) {
        assert.equal(await f.repository.tokenAccess(id, 1_799_999_000), "revoked");
        assert.equal(await f.repository.tokenAccess(id, 1_800_000_000), "revoked", "same second");
        assert.equal(await f.repository.tokenAccess(id, 1_800_000_001), "ok", "a second later");
      }
      assert.equal(await f.repository.tokenAccess(3, 1_799_999_000), "ok", "others keep theirs");
    },
  );

  contract(
    "relations: approved either way, pending is not; a block refuses and hides both ways",
    async (f) => {
      await f.befriend(1, 2);
      await f.befriend(3, 1);
      await f.befriend(1, 4, "pending");
      await f.block(3, 1);
      assert.equal(await f.repository.relation(1, 2), "ok");
      assert.equal(await f.repository.relation(2, 1), "ok");
      assert.equal(await f.repository.relation(1, 4), "not_friends");
      assert.equal(await f.repository.relation(1, 3), "blocked", "the blocked user cannot write");
      assert.equal(await f.repository.relation(3, 1), "blocked", "nor can the blocker");
      assert.deepEqual([...await f.repository.friendIds(1)], [2], "a block hides the blocker");
      assert.deepEqual([...await f.repository.friendIds(3)], [], "and the blocked");
      assert.deepEqual([...await f.repository.friendIds(4)], []);
    },
  );

  contract(
    "stored messages get increasing ids; a repeated client id returns the original",
    async (f) => {
      const base = { senderUserId: 1, recipientUserId: 2 };
      const [a, b, c] = await Promise.all([
        f.repository.storeMessage({ ...base, messageText: "a", clientMessageId: "k" }),
        f.repository.storeMessage({ ...base, messageText: "b", clientMessageId: undefined }),
        f.repository.storeMessage({ ...base, messageText: "a", clientMessageId: "k" }),
      ]);
      assert.equal(a!.duplicate, false);
      assert.equal(b!.duplicate, false);
      assert.equal(c!.duplicate, true);
      assert.ok(b!.message.messageId > a!.message.messageId);
      assert.deepEqual(c!.message, a!.message);
      assert.equal(a!.message.messageText, "a");
      assert.ok(a!.message.sentAt instanceof Date);
      const other = await f.repository.storeMessage({
        ...base,
        senderUserId: 2,
        messageText: "d",
        clientMessageId: "k",
      });
      assert.equal(other.duplicate, false, "client ids are per sender");
      assert.equal(await f.repository.isReady(), true);
    },
  );

  contract(
    "a client id reused for another recipient or text is refused and stores nothing",
    async (f) => {
      const first = {
        senderUserId: 1,
        recipientUserId: 2,
        messageText: "hi",
        clientMessageId: "k",
      };
      await f.repository.storeMessage(first);
      await assert.rejects(
        f.repository.storeMessage({ ...first, recipientUserId: 3 }),
        ClientMessageIdReusedError,
      );
      await assert.rejects(
        f.repository.storeMessage({ ...first, messageText: "other" }),
        ClientMessageIdReusedError,
      );
      const again = await f.repository.storeMessage(first);
      assert.equal(again.duplicate, true);
      const all = await f.repository.messagesAfter(1, 0, 100);
      assert.deepEqual(all.messages.map((m) => [m.recipientUserId, m.messageText]), [[2, "hi"]]);
      assert.equal((await f.repository.messagesAfter(3, 0, 100)).messages.length, 0);
    },
  );

  /** Stores `[sender, recipient]` pairs in order; returns their records' ids. */
  const seed = async (f: Fixture, pairs: [number, number][]) => {
    const ids: number[] = [];
    for (const [i, [s, r]] of pairs.entries()) {
      const { message } = await f.repository.storeMessage({
        senderUserId: s,
        recipientUserId: r,
        messageText: `m${i} ${s}->${r}`,
        clientMessageId: i % 2 === 0 ? `c${i}` : undefined,
      });
      ids.push(message.messageId);
    }
    return ids;
  };
  const texts = (messages: MessageRecord[]) => messages.map((m) => m.messageText);

  contract("sync pages through every message to or from the user, oldest first", async (f) => {
    const pairs: [number, number][] = [[1, 2], [2, 1], [2, 3], [3, 1], [1, 3], [3, 2], [2, 1]];
    const ids = await seed(f, pairs);
    const mine = pairs.flatMap(([s, r], i) => s === 1 || r === 1 ? [`m${i} ${s}->${r}`] : []);
    const seen: string[] = [];
    const pages: boolean[] = [];
    let after = 0;
    for (;;) {
      const page = await f.repository.messagesAfter(1, after, 2);
      seen.push(...texts(page.messages));
      pages.push(page.hasMore);
      const ids = page.messages.map((m) => m.messageId);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      if (!page.hasMore) break;
      after = ids.at(-1)!;
    }
    assert.deepEqual(seen, mine);
    assert.deepEqual(pages, [true, true, false], "5 messages in pages of 2");
    const exact = await f.repository.messagesAfter(1, ids[0]!, 4);
    assert.equal(exact.messages.length, 4);
    assert.equal(exact.hasMore, false, "exactly a full page is not 'more'");
    const [first] = (await f.repository.messagesAfter(1, 0, 1)).messages;
    assert.deepEqual(
      { ...first!, sentAt: undefined },
      {
        messageId: ids[0],
        senderUserId: 1,
        recipientUserId: 2,
        messageText: "m0 1->2",
        clientMessageId: "c0",
        sentAt: undefined,
        isRead: false,
        readAt: undefined,
        deliveredAt: undefined,
      },
    );
    assert.ok(first!.sentAt instanceof Date);
    const none = await f.repository.messagesAfter(1, ids.at(-1)!, 10);
    assert.deepEqual(none, { messages: [], hasMore: false });
  });

  contract("history scrolls one conversation back across pages, newest first", async (f) => {
    const pairs: [number, number][] = [[1, 2], [1, 3], [2, 1], [3, 1], [1, 2], [2, 3], [2, 1]];
    await seed(f, pairs);
    const conversation = pairs.flatMap(([s, r], i) =>
      (s === 1 && r === 2) || (s === 2 && r === 1) ? [`m${i} ${s}->${r}`] : []
    ).reverse();
    const seen: string[] = [];
    const more: boolean[] = [];
    let before: number | undefined;
    for (;;) {
      const page = await f.repository.conversationBefore(1, 2, before, 3);
      seen.push(...texts(page.messages));
      more.push(page.hasMore);
      if (!page.hasMore) break;
      before = page.messages.at(-1)!.messageId;
    }
    assert.deepEqual(seen, conversation);
    assert.deepEqual(more, [true, false]);
    const fromBob = await f.repository.conversationBefore(2, 1, undefined, 10);
    assert.deepEqual(texts(fromBob.messages), conversation, "the same from either side");
    assert.deepEqual(await f.repository.conversationBefore(1, 4, undefined, 10), {
      messages: [],
      hasMore: false,
    });
  });

  contract("unread counts drop after read; read changes nothing the second time", async (f) => {
    assert.deepEqual(await f.repository.mailboxSummary(1), {
      unreadCount: 0,
      unreadBySender: new Map(),
      lastMessageId: 0,
      seq: 0,
    });
    const ids = await seed(f, [[2, 1], [2, 1], [3, 1], [1, 2], [2, 1], [2, 3]]);
    const before = await f.repository.mailboxSummary(1);
    assert.deepEqual(before, {
      unreadCount: 4,
      unreadBySender: new Map([[2, 3], [3, 1]]),
      lastMessageId: ids[4],
      seq: 5,
    });
    const readAt = (await f.repository.markRead(1, 2, ids[1]!))?.readAt;
    assert.ok(readAt instanceof Date);
    assert.deepEqual(await f.repository.mailboxSummary(1), {
      unreadCount: 2,
      unreadBySender: new Map([[2, 1], [3, 1]]),
      lastMessageId: ids[4],
      seq: 6,
    });
    assert.equal(await f.repository.markRead(1, 2, ids[1]!), undefined, "nothing changed");
    assert.equal(await f.repository.markRead(3, 1, ids[3]!), undefined, "none from 1 to 3");
    const page = await f.repository.messagesAfter(1, 0, 10);
    assert.deepEqual(page.messages.map((m) => [m.isRead, m.readAt?.getTime()]), [
      [true, readAt.getTime()],
      [true, readAt.getTime()],
      [false, undefined],
      [false, undefined],
      [false, undefined],
    ]);
    assert.ok(await f.repository.markRead(1, 2, ids.at(-1)!));
    assert.deepEqual((await f.repository.mailboxSummary(1)).unreadBySender, new Map([[3, 1]]));
    assert.equal((await f.repository.mailboxSummary(3)).lastMessageId, ids[5]);
  });

  contract(
    "a read up to an id above every message covers those stored before it only",
    async (f) => {
      const [first] = await seed(f, [[2, 1]]);
      const readAt = (await f.repository.markRead(1, 2, Number.MAX_SAFE_INTEGER))?.readAt;
      assert.ok(readAt instanceof Date);
      const { message: { messageId: later } } = await f.repository.storeMessage({
        senderUserId: 2,
        recipientUserId: 1,
        messageText: "after the read",
        clientMessageId: undefined,
      });
      assert.deepEqual((await f.repository.mailboxSummary(1)).unreadBySender, new Map([[2, 1]]));
      const history = await f.repository.conversationBefore(1, 2, undefined, 10);
      assert.deepEqual(history.messages.map((m) => [m.messageId, m.isRead]), [
        [later, false],
        [first, true],
      ]);
      const again = await f.repository.markRead(1, 2, Number.MAX_SAFE_INTEGER);
      assert.ok(again?.readAt instanceof Date, "the later message was read by the second read");
      assert.equal((await f.repository.mailboxSummary(1)).unreadCount, 0);
    },
  );

  contract("summaries asked for together are each the user's own", async (f) => {
    const ids = await seed(f, [[2, 1], [3, 1], [1, 2], [3, 2], [3, 2], [1, 4]]);
    const alone = [];
    for (const user of [1, 2, 3, 4, 5]) alone.push(await f.repository.mailboxSummary(user));
    // Logins arriving at once.
    const together = await Promise.all(
      [1, 2, 3, 4, 5, 1].map((u) => f.repository.mailboxSummary(u)),
    );
    assert.deepEqual(together, [...alone, alone[0]]);
    assert.deepEqual(alone, [
      { unreadCount: 2, unreadBySender: new Map([[2, 1], [3, 1]]), lastMessageId: ids[5], seq: 4 },
      { unreadCount: 3, unreadBySender: new Map([[1, 1], [3, 2]]), lastMessageId: ids[4], seq: 4 },
      { unreadCount: 0, unreadBySender: new Map(), lastMessageId: ids[4], seq: 3 },
      { unreadCount: 1, unreadBySender: new Map([[1, 1]]), lastMessageId: ids[5], seq: 1 },
      { unreadCount: 0, unreadBySender: new Map(), lastMessageId: 0, seq: 0 },
    ]);
  });

  contract(
    "signIn answers the token's access, and when ok what friends, mailbox, settings and last seen answer",
    async (f) => {
      for (const id of [1, 2, 3, 4]) await f.addUser(id);
      await f.addUser(5, false);
      await f.befriend(1, 2);
      await f.befriend(3, 1);
      await f.befriend(1, 4);
      await f.block(4, 1);
      const ids = await seed(f, [[2, 1], [2, 1], [3, 1], [1, 2]]);
      await f.repository.markRead(1, 2, ids[0]!);
      const inAnHour = new Date(Math.floor(Date.now() / 1000) * 1000 + 3_600_000);
      const body = () => ({});
      await f.repository.updateSettings(1, { mute: { friendUserId: 2, until: inAnHour } }, body);
      await f.repository.updateSettings(1, { dndUntil: inAnHour }, body);
      await f.repository.updateSettings(2, { appearOffline: true }, body);
      const now = Math.floor(Date.now() / 1000);
      await f.repository.revokeTokens([3], new Date(now * 1000));

      assert.deepEqual(await f.repository.signIn(5, now), { access: "inactive" });
      assert.deepEqual(await f.repository.signIn(6, now), { access: "inactive" }, "unknown");
      assert.deepEqual(await f.repository.signIn(3, now), { access: "revoked" });
      const signedIn = await f.repository.signIn(1, now);
      assert.equal(signedIn.access, "ok");
      if (signedIn.access !== "ok") return;
      const friends = [...await f.repository.friendIds(1)].sort((a, b) => a - b);
      assert.deepEqual([...signedIn.friends].sort((a, b) => a - b), friends);
      assert.deepEqual(friends, [2, 3], "the blocker is no friend");
      assert.deepEqual(signedIn.mailbox, await f.repository.mailboxSummary(1));
      assert.deepEqual(signedIn.mailbox.unreadBySender, new Map([[2, 1], [3, 1]]));
      assert.deepEqual(signedIn.settings, await f.repository.settings(1));
      assert.deepEqual(signedIn.settings.muted, new Map([[2, inAnHour]]));
      assert.deepEqual(signedIn.settings.dndUntil, inAnHour);
      assert.deepEqual(signedIn.seen, await f.repository.seenStates(friends));
      assert.equal(signedIn.seen.get(2)?.appearOffline, true);
      assert.ok(signedIn.seen.get(2)?.lastSeenAt instanceof Date);
      // A user with nothing: no friends, an empty mailbox, the default settings.
      const alone = await f.repository.signIn(4, now);
      assert.deepEqual(alone, {
        access: "ok",
        friends: [],
        mailbox: { unreadCount: 0, unreadBySender: new Map(), lastMessageId: 0, seq: 0 },
        settings: { muted: new Map(), dndUntil: undefined, appearOffline: false },
        seen: new Map(),
      });
    },
  );

  contract(
    "delivered is first once, then already; others' messages are not_recipient",
    async (f) => {
      const [toBob, toAlice] = await seed(f, [[1, 2], [2, 1]]);
      // Not friends here: the receipt is an update of the recipient's only.
      assert.deepEqual(await f.repository.markDelivered(2, toBob!), {
        status: "first",
        senderUserId: 1,
        seqs: new Map([[2, 3]]),
      });
      assert.deepEqual(await f.repository.markDelivered(2, toBob!), { status: "already" });
      assert.deepEqual(await f.repository.markDelivered(1, toBob!), { status: "not_recipient" });
      assert.deepEqual(await f.repository.markDelivered(2, toAlice!), { status: "not_recipient" });
      assert.deepEqual(await f.repository.markDelivered(2, 999_999), { status: "not_recipient" });
      const [record] = (await f.repository.conversationBefore(2, 1, toAlice, 1)).messages;
      assert.ok(record!.deliveredAt instanceof Date);
    },
  );

  contract("inactiveUsers lists the unknown and the deactivated", async (f) => {
    await f.addUser(1);
    await f.addUser(2, false);
    await f.addUser(3);
    assert.deepEqual((await f.repository.inactiveUsers([1, 2, 3, 4])).sort(), [2, 4]);
    assert.deepEqual(await f.repository.inactiveUsers([]), []);
  });

  contract(
    "a message is found by its sender's client_message_id, with what the hook did to it",
    async (f) => {
      const r = f.repository;
      const plain = await r.storeMessage({
        senderUserId: 1,
        recipientUserId: 2,
        messageText: "hello",
        clientMessageId: "k1",
      });
      const masked = await r.storeMessage({
        senderUserId: 1,
        recipientUserId: 2,
        messageText: "****",
        clientMessageId: "k2",
        moderation: "replaced",
      });
      const found = async (sender: number, cmid: string) => {
        const m = await r.messageByClientId(sender, cmid);
        return m && [m.messageId, m.messageText, m.recipientUserId, m.moderation];
      };
      assert.deepEqual(await found(1, "k1"), [plain.message.messageId, "hello", 2, undefined]);
      assert.deepEqual(await found(1, "k2"), [masked.message.messageId, "****", 2, "replaced"]);
      assert.equal(await r.messageByClientId(2, "k1"), undefined, "another sender's id");
      assert.equal(await r.messageByClientId(1, "k3"), undefined);
    },
  );

  contract(
    "a report is stored once per reporter and message, only by the message's two users",
    async (f) => {
      const r = f.repository;
      const send = async (from: number, to: number, text: string) =>
        (await r.storeMessage({
          senderUserId: from,
          recipientUserId: to,
          messageText: text,
          clientMessageId: undefined,
        })).message.messageId;
      const ids: number[] = [];
      for (let i = 0; i < 25; i++) {
        ids.push(await send(i % 2 === 0 ? 1 : 2, i % 2 === 0 ? 2 : 1, `m${i}`));
        await send(3, 1, `other${i}`); // another conversation of user 1, never in the snapshot
      }
      const reported = ids[12]!;
      const first = await r.reportMessage({
        reporterUserId: 2,
        messageId: reported,
        reason: "harassment",
        note: "mean",
      });
      assert.equal(first.status, "reported");
      assert.ok(first.status === "reported" && first.created);
      const again = await r.reportMessage({
        reporterUserId: 2,
        messageId: reported,
        reason: "spam",
        note: undefined,
      });
      assert.deepEqual(again, { status: "reported", reportId: first.reportId, created: false });
      const bySender = await r.reportMessage({
        reporterUserId: 1,
        messageId: reported,
        reason: "other",
        note: undefined,
      });
      assert.ok(bySender.status === "reported" && bySender.created);
      assert.notEqual(bySender.reportId, first.reportId);
      for (const [reporter, messageId] of [[3, reported], [2, ids[24]! + 100]] as const) {
        assert.deepEqual(
          await r.reportMessage({
            reporterUserId: reporter,
            messageId,
            reason: "spam",
            note: undefined,
          }),
          { status: "not_found" },
        );
      }
      // The snapshot: 10 before, the message, 10 after, of that conversation only.
      const snapshot = await f.snapshot(first.reportId);
      assert.deepEqual(snapshot.map((m) => m.message_text), [
        ...Array.from({ length: 21 }, (_, i) => `m${i + 2}`),
      ]);
      assert.deepEqual(Object.keys(snapshot[0]!).sort(), [
        "message_id",
        "message_text",
        "recipient_user_id",
        "sender_user_id",
        "sent_at",
      ]);
      const edge = await r.reportMessage({
        reporterUserId: 1,
        messageId: ids[1]!,
        reason: "spam",
        note: undefined,
      });
      assert.ok(edge.status === "reported");
      assert.deepEqual((await f.snapshot(edge.reportId)).map((m) => m.message_text), [
        ...Array.from({ length: 12 }, (_, i) => `m${i}`),
      ]);
    },
  );
}
