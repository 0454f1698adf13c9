/**
 * @module store/memory
 * An in-memory `ChatRepository` for unit tests and the contract suite. It
 * keeps the Postgres implementation's semantics (dedup by sender and
 * client id, either-direction friendships, blocks refusing both directions,
 * receipts, paging) without a cache.
 */

import type {
  ChatRepository,
  DeliveredResult,
  MailboxSummary,
  MessagePage,
  MessageRecord,
  NewMessage,
  Relation,
  StoreResult,
  TokenAccess,
} from "./repository.ts";
import { ClientMessageIdReusedError, UnavailableError } from "./repository.ts";
import type {
  SeenState,
  SettingsBody,
  SettingsChange,
  SettingsUpdate,
  UserSettings,
} from "./settings.ts";

export class MemoryRepository implements ChatRepository {
  readonly users = new Map<number, { active: boolean }>();
  readonly friendships: { a: number; b: number; status: string }[] = [];
  readonly blocks: { blocker: number; blocked: number }[] = [];
  /** User id → the instant (ms) at or before which their tokens are revoked. */
  readonly revocations = new Map<number, number>();
  /** In id order (ids are 1, 2, 3, …). */
  readonly messages: MessageRecord[] = [];
  /** User id → settings as stored (v1.2); mutes by friend id, times in ms. */
  readonly userSettings = new Map<number, {
    dndUntil: number | undefined;
    appearOffline: boolean;
    lastSeenAt: number | undefined;
    mutes: Map<number, number>;
  }>();
  /** The settings changes stored, each with its body (the memory store's update sequence). */
  readonly settingsUpdates: { userId: number; body: unknown }[] = [];
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
      const row: MessageRecord = {
        messageId: this.messages.length + 1,
        ...message,
        sentAt: new Date(this.now()),
        isRead: false,
        readAt: undefined,
        deliveredAt: undefined,
      };
      this.messages.push(row);
      return { message: stored(row), duplicate: false };
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

  settings(userId: number): Promise<UserSettings> {
    return this.guard(() => this.#settingsNow(userId));
  }

  updateSettings(
    userId: number,
    change: SettingsChange,
    body: SettingsBody,
  ): Promise<SettingsUpdate> {
    return this.guard(() => {
      const now = this.now();
      const row = this.#settingsRow(userId);
      const before = row.appearOffline;
      if (change.mute !== undefined) {
        const until = change.mute.until?.getTime();
        if (until === undefined || until <= now) row.mutes.delete(change.mute.friendUserId);
        else row.mutes.set(change.mute.friendUserId, until);
      }
      if (change.dndUntil !== undefined) row.dndUntil = change.dndUntil?.getTime();
      if (change.appearOffline !== undefined) row.appearOffline = change.appearOffline;
      if (row.appearOffline && !before) row.lastSeenAt = now;
      const settings = this.#settingsNow(userId);
      this.settingsUpdates.push({ userId, body: body(settings) });
      const seq = this.settingsUpdates.filter((u) => u.userId === userId).length;
      return {
        settings,
        seq,
        appearOfflineChanged: row.appearOffline !== before,
        lastSeenAt: row.lastSeenAt === undefined ? undefined : new Date(row.lastSeenAt),
      };
    });
  }

  seenStates(userIds: readonly number[]): Promise<Map<number, SeenState>> {
    return this.guard(() => {
      const states = new Map<number, SeenState>();
      for (const id of userIds) {
        const row = this.userSettings.get(id);
        if (row === undefined) continue;
        states.set(id, {
          appearOffline: row.appearOffline,
          lastSeenAt: row.lastSeenAt === undefined ? undefined : new Date(row.lastSeenAt),
        });
      }
      return states;
    });
  }

  appearsOffline(userId: number): Promise<boolean> {
    return this.guard(() => this.userSettings.get(userId)?.appearOffline ?? false);
  }

  recordLastSeen(userId: number, at: Date): void {
    if (this.down) return;
    const row = this.#settingsRow(userId);
    row.lastSeenAt = Math.max(row.lastSeenAt ?? 0, at.getTime());
  }

  #settingsRow(userId: number) {
    let row = this.userSettings.get(userId);
    if (row === undefined) {
      row = { dndUntil: undefined, appearOffline: false, lastSeenAt: undefined, mutes: new Map() };
      this.userSettings.set(userId, row);
    }
    return row;
  }

  #settingsNow(userId: number): UserSettings {
    const now = this.now();
    const row = this.userSettings.get(userId);
    const muted = new Map<number, Date>();
    for (const [friend, until] of [...(row?.mutes ?? [])].sort((a, b) => a[0] - b[0])) {
      if (until > now) muted.set(friend, new Date(until));
    }
    const dnd = row?.dndUntil;
    return {
      muted,
      dndUntil: dnd !== undefined && dnd > now ? new Date(dnd) : undefined,
      appearOffline: row?.appearOffline ?? false,
    };
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

/** Copies of the first `limit` messages, and whether more matched. */
function page(matching: MessageRecord[], limit: number): MessagePage {
  return {
    messages: matching.slice(0, limit).map((m) => ({ ...m })),
    hasMore: matching.length > limit,
  };
}
