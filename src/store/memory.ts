/**
 * @module store/memory
 * An in-memory `ChatRepository` for unit tests and the contract suite. It
 * keeps the Postgres implementation's semantics (dedup by sender and
 * client id, either-direction friendships, blocks refusing both directions,
 * receipts, paging) without a cache.
 */

import type {
  ChatRepository,
  ClientMessageRow,
  DeliveredResult,
  MailboxSummary,
  MessagePage,
  MessageRecord,
  NewMessage,
  NewReport,
  Relation,
  ReportResult,
  SnapshotMessage,
  StoreResult,
  TokenAccess,
} from "./repository.ts";
import { ClientMessageIdReusedError, SNAPSHOT_AROUND, UnavailableError } from "./repository.ts";

/** A stored report (the columns of `chat_reports`). */
export interface MemoryReport extends NewReport {
  reportId: number;
  reportedUserId: number;
  snapshot: SnapshotMessage[];
  createdAt: Date;
}

export class MemoryRepository implements ChatRepository {
  readonly users = new Map<number, { active: boolean }>();
  readonly friendships: { a: number; b: number; status: string }[] = [];
  readonly blocks: { blocker: number; blocked: number }[] = [];
  /** User id → the instant (ms) at or before which their tokens are revoked. */
  readonly revocations = new Map<number, number>();
  /** In id order (ids are 1, 2, 3, …). */
  readonly messages: MessageRecord[] = [];
  /** Message id → what the moderation hook did to it (`messages.moderation`). */
  readonly moderation = new Map<number, "replaced" | "unchecked">();
  /** In id order (ids are 1, 2, 3, …). */
  readonly reports: MemoryReport[] = [];
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

  tokenAccess(userId: number, issuedAt: number): Promise<TokenAccess> {
    return this.guard(() => {
      if (this.users.get(userId)?.active !== true) return "inactive";
      const revokedAt = this.revocations.get(userId);
      return revokedAt !== undefined && issuedAt * 1000 <= revokedAt ? "revoked" : "ok";
    });
  }

  revokeTokens(userIds: readonly number[], at: Date): Promise<void> {
    return this.guard(() => {
      for (const id of userIds) {
        this.revocations.set(id, Math.max(this.revocations.get(id) ?? 0, at.getTime()));
      }
    });
  }

  relation(senderUserId: number, recipientUserId: number): Promise<Relation> {
    return this.guard(() => {
      const friends = this.friendships.some((f) =>
        f.status === "approved" &&
        ((f.a === senderUserId && f.b === recipientUserId) ||
          (f.a === recipientUserId && f.b === senderUserId))
      );
      if (!friends) return "not_friends";
      return this.#blockedEitherWay(senderUserId, recipientUserId) ? "blocked" : "ok";
    });
  }

  #blockedEitherWay(a: number, b: number): boolean {
    return this.blocks.some((x) =>
      (x.blocker === a && x.blocked === b) || (x.blocker === b && x.blocked === a)
    );
  }

  friendIds(userId: number): Promise<readonly number[]> {
    return this.guard(() => {
      const ids = new Set<number>();
      for (const f of this.friendships) {
        if (f.status !== "approved") continue;
        if (f.a === userId) ids.add(f.b);
        if (f.b === userId) ids.add(f.a);
      }
      return [...ids].filter((id) => !this.#blockedEitherWay(userId, id));
    });
  }

  storeMessage(message: NewMessage): Promise<StoreResult> {
    return this.guard(() => {
      if (message.clientMessageId !== undefined) {
        const original = this.messages.find((m) =>
          m.senderUserId === message.senderUserId && m.clientMessageId === message.clientMessageId
        );
        if (original !== undefined) {
          if (
            original.recipientUserId !== message.recipientUserId ||
            original.messageText !== message.messageText
          ) {
            throw new ClientMessageIdReusedError(
              "client_message_id was already used for another message",
            );
          }
          return { message: stored(original), duplicate: true };
        }
      }
      const { moderation, ...fields } = message;
      const row: MessageRecord = {
        messageId: this.messages.length + 1,
        ...fields,
        sentAt: new Date(this.now()),
        isRead: false,
        readAt: undefined,
        deliveredAt: undefined,
      };
      this.messages.push(row);
      if (moderation !== undefined) this.moderation.set(row.messageId, moderation);
      return { message: stored(row), duplicate: false };
    });
  }

  messageByClientId(
    senderUserId: number,
    clientMessageId: string,
  ): Promise<ClientMessageRow | undefined> {
    return this.guard(() => {
      const row = this.messages.find((m) =>
        m.senderUserId === senderUserId && m.clientMessageId === clientMessageId
      );
      if (row === undefined) return undefined;
      return { message: stored(row), moderation: this.moderation.get(row.messageId) };
    });
  }

  reportMessage(report: NewReport): Promise<ReportResult> {
    return this.guard((): ReportResult => {
      const m = this.messages[report.messageId - 1];
      if (
        m === undefined ||
        (m.senderUserId !== report.reporterUserId && m.recipientUserId !== report.reporterUserId)
      ) {
        return { status: "not_found" };
      }
      const earlier = this.reports.find((r) =>
        r.reporterUserId === report.reporterUserId && r.messageId === report.messageId
      );
      if (earlier !== undefined) {
        return { status: "reported", reportId: earlier.reportId, created: false };
      }
      const conversation = this.messages.filter((c) =>
        (c.senderUserId === m.senderUserId && c.recipientUserId === m.recipientUserId) ||
        (c.senderUserId === m.recipientUserId && c.recipientUserId === m.senderUserId)
      );
      const at = conversation.indexOf(m);
      const around = conversation.slice(
        Math.max(0, at - SNAPSHOT_AROUND),
        at + SNAPSHOT_AROUND + 1,
      );
      const reportId = this.reports.length + 1;
      this.reports.push({
        ...report,
        reportId,
        reportedUserId: m.senderUserId,
        snapshot: around.map(snapshotOf),
        createdAt: new Date(this.now()),
      });
      return { status: "reported", reportId, created: true };
    });
  }

  mailboxSummary(userId: number): Promise<MailboxSummary> {
    return this.guard(() => {
      const summary: MailboxSummary = {
        unreadCount: 0,
        unreadBySender: new Map(),
        lastMessageId: 0,
      };
      for (const m of this.messages) {
        if (m.senderUserId === userId || m.recipientUserId === userId) {
          summary.lastMessageId = m.messageId;
        }
        if (m.recipientUserId === userId && !m.isRead) {
          summary.unreadCount++;
          const by = summary.unreadBySender;
          by.set(m.senderUserId, (by.get(m.senderUserId) ?? 0) + 1);
        }
      }
      return summary;
    });
  }

  messagesAfter(userId: number, afterMessageId: number, limit: number): Promise<MessagePage> {
    return this.guard(() =>
      page(
        this.messages.filter((m) =>
          m.messageId > afterMessageId &&
          (m.senderUserId === userId || m.recipientUserId === userId)
        ),
        limit,
      )
    );
  }

  conversationBefore(
    userId: number,
    friendUserId: number,
    beforeMessageId: number | undefined,
    limit: number,
  ): Promise<MessagePage> {
    return this.guard(() =>
      page(
        this.messages.filter((m) =>
          (beforeMessageId === undefined || m.messageId < beforeMessageId) &&
          ((m.senderUserId === userId && m.recipientUserId === friendUserId) ||
            (m.senderUserId === friendUserId && m.recipientUserId === userId))
        ).reverse(),
        limit,
      )
    );
  }

  markRead(readerUserId: number, friendUserId: number, upToMessageId: number): Promise<
    Date | undefined
  > {
    return this.guard(() => {
      const readAt = new Date(this.now());
      let changed = false;
      for (const m of this.messages) {
        if (
          m.recipientUserId === readerUserId && m.senderUserId === friendUserId &&
          m.messageId <= upToMessageId && !m.isRead
        ) {
          m.isRead = true;
          m.readAt = readAt;
          changed = true;
        }
      }
      return changed ? readAt : undefined;
    });
  }

  markDelivered(recipientUserId: number, messageId: number): Promise<DeliveredResult> {
    return this.guard((): DeliveredResult => {
      const m = this.messages[messageId - 1];
      if (m === undefined || m.recipientUserId !== recipientUserId) {
        return { status: "not_recipient" };
      }
      if (m.deliveredAt !== undefined) return { status: "already" };
      m.deliveredAt = new Date(this.now());
      return { status: "first", senderUserId: m.senderUserId };
    });
  }

  inactiveUsers(userIds: readonly number[]): Promise<number[]> {
    return this.guard(() => userIds.filter((id) => this.users.get(id)?.active !== true));
  }

  isReady(): Promise<boolean> {
    return Promise.resolve(!this.down);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private guard<T>(answer: () => T): Promise<T> {
    if (this.down) return Promise.reject(new UnavailableError("storage is down"));
    try {
      return Promise.resolve(answer());
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

/** The stored fields only, as `storeMessage` answers (a copy: receipts change the record). */
function stored(m: MessageRecord): StoreResult["message"] {
  return {
    messageId: m.messageId,
    senderUserId: m.senderUserId,
    recipientUserId: m.recipientUserId,
    messageText: m.messageText,
    sentAt: m.sentAt,
    clientMessageId: m.clientMessageId,
  };
}

function snapshotOf(m: MessageRecord): SnapshotMessage {
  const message: SnapshotMessage = {
    message_id: m.messageId,
    sender_user_id: m.senderUserId,
    recipient_user_id: m.recipientUserId,
    message_text: m.messageText,
    sent_at: m.sentAt.toISOString(),
  };
  if (m.clientMessageId !== undefined) message.client_message_id = m.clientMessageId;
  return message;
}

/** Copies of the first `limit` messages, and whether more matched. */
function page(matching: MessageRecord[], limit: number): MessagePage {
  return {
    messages: matching.slice(0, limit).map((m) => ({ ...m })),
    hasMore: matching.length > limit,
  };
}
