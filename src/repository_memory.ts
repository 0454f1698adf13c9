/**
 * @module repository_memory
 * An in-memory `ChatRepository` for unit tests and the contract suite. It
 * keeps the Postgres implementation's semantics (dedup by sender and
 * client id, either-direction friendships, one-way blocks) without a cache.
 */

import type {
  ChatRepository,
  DeliveredResult,
  MailboxSummary,
  MessagePage,
  NewMessage,
  Relation,
  StoredMessage,
  StoreResult,
} from "./repository.ts";
import { UnavailableError } from "./repository.ts";

export class MemoryRepository implements ChatRepository {
  readonly users = new Map<number, { active: boolean }>();
  readonly friendships: { a: number; b: number; status: string }[] = [];
  readonly blocks: { blocker: number; blocked: number }[] = [];
  readonly messages: StoredMessage[] = [];
  /** While true every call rejects with `UnavailableError`, as a database outage would. */
  down = false;

  constructor(private readonly now: () => number = Date.now) {}

  addUser(userId: number, active = true): void {
    this.users.set(userId, { active });
  }

  befriend(a: number, b: number, status = "approved"): void {
    this.friendships.push({ a, b, status });
  }

  block(blocker: number, blocked: number): void {
    this.blocks.push({ blocker, blocked });
  }

  isActiveUser(userId: number): Promise<boolean> {
    return this.guard(() => this.users.get(userId)?.active === true);
  }

  relation(senderUserId: number, recipientUserId: number): Promise<Relation> {
    return this.guard(() => {
      const friends = this.friendships.some((f) =>
        f.status === "approved" &&
        ((f.a === senderUserId && f.b === recipientUserId) ||
          (f.a === recipientUserId && f.b === senderUserId))
      );
      if (!friends) return "not_friends";
      const blocked = this.blocks.some((b) =>
        b.blocker === recipientUserId && b.blocked === senderUserId
      );
      return blocked ? "blocked" : "ok";
    });
  }

  friendIds(userId: number): Promise<readonly number[]> {
    return this.guard(() => {
      const ids = new Set<number>();
      for (const f of this.friendships) {
        if (f.status !== "approved") continue;
        if (f.a === userId) ids.add(f.b);
        if (f.b === userId) ids.add(f.a);
      }
      return [...ids];
    });
  }

  storeMessage(message: NewMessage): Promise<StoreResult> {
    return this.guard(() => {
      if (message.clientMessageId !== undefined) {
        const original = this.messages.find((m) =>
          m.senderUserId === message.senderUserId && m.clientMessageId === message.clientMessageId
        );
        if (original !== undefined) return { message: original, duplicate: true };
      }
      const stored: StoredMessage = {
        messageId: this.messages.length + 1,
        ...message,
        sentAt: new Date(this.now()),
      };
      this.messages.push(stored);
      return { message: stored, duplicate: false };
    });
  }

  // TEMPORARY: the v1.1 read-back methods, implemented on the repository branch.
  mailboxSummary(): Promise<MailboxSummary> {
    return Promise.reject(new Error("not implemented yet"));
  }
  messagesAfter(): Promise<MessagePage> {
    return Promise.reject(new Error("not implemented yet"));
  }
  conversationBefore(): Promise<MessagePage> {
    return Promise.reject(new Error("not implemented yet"));
  }
  markRead(): Promise<Date | undefined> {
    return Promise.reject(new Error("not implemented yet"));
  }
  markDelivered(): Promise<DeliveredResult> {
    return Promise.reject(new Error("not implemented yet"));
  }
  inactiveUsers(): Promise<number[]> {
    return Promise.reject(new Error("not implemented yet"));
  }

  isReady(): Promise<boolean> {
    return Promise.resolve(!this.down);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private guard<T>(answer: () => T): Promise<T> {
    if (this.down) return Promise.reject(new UnavailableError("storage is down"));
    return Promise.resolve(answer());
  }
}
