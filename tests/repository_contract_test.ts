/**
 * One contract for every `ChatRepository`: the in-memory fake and the
 * PostgreSQL implementation must answer alike.
 */

import assert from "node:assert/strict";
import { silentLogger } from "../src/log.ts";
import type { ChatRepository } from "../src/repository.ts";
import { MemoryRepository } from "../src/repository_memory.ts";
import { PostgresRepository } from "../src/repository_postgres.ts";
import { createTestDatabase } from "./support/db.ts";

interface Fixture {
  repository: ChatRepository;
  addUser(id: number, active?: boolean): Promise<void>;
  befriend(a: number, b: number, status?: string): Promise<void>;
  block(blocker: number, blocked: number): Promise<void>;
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
      done: () => repository.close(),
    });
  },
  postgres: async () => {
    const db = await createTestDatabase();
    const repository = await PostgresRepository.connect({
      url: db.url,
      poolSize: 2,
      statementTimeoutMs: 5000,
      relationCacheMs: 0,
      logger: silentLogger,
    });
    return {
      repository,
      addUser: (id, active) => db.addUser(id, active === undefined ? {} : { active }),
      befriend: (a, b, status) => db.befriend(a, b, status),
      block: (x, y) => db.block(x, y),
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

  contract("only existing active users are active", async (f) => {
    await f.addUser(1);
    await f.addUser(2, false);
    assert.equal(await f.repository.isActiveUser(1), true);
    assert.equal(await f.repository.isActiveUser(2), false);
    assert.equal(await f.repository.isActiveUser(3), false);
  });

  contract("relations: approved either way, pending is not, blocks are one-way", async (f) => {
    await f.befriend(1, 2);
    await f.befriend(3, 1);
    await f.befriend(1, 4, "pending");
    await f.block(3, 1);
    assert.equal(await f.repository.relation(1, 2), "ok");
    assert.equal(await f.repository.relation(2, 1), "ok");
    assert.equal(await f.repository.relation(1, 4), "not_friends");
    assert.equal(await f.repository.relation(1, 3), "blocked");
    assert.equal(await f.repository.relation(3, 1), "ok");
    assert.deepEqual([...await f.repository.friendIds(1)].sort(), [2, 3]);
    assert.deepEqual([...await f.repository.friendIds(4)], []);
  });

  contract(
    "stored messages get increasing ids; a repeated client id returns the original",
    async (f) => {
      const base = { senderUserId: 1, recipientUserId: 2 };
      const [a, b, c] = await Promise.all([
        f.repository.storeMessage({ ...base, messageText: "a", clientMessageId: "k" }),
        f.repository.storeMessage({ ...base, messageText: "b", clientMessageId: undefined }),
        f.repository.storeMessage({ ...base, messageText: "c", clientMessageId: "k" }),
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
}
