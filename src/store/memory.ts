/**
 * @module store/memory
 * An in-memory `ChatRepository` for unit tests and the contract suite. It
 * keeps the Postgres implementation's semantics (dedup by sender and
 * client id, either-direction friendships, blocks refusing both directions,
 * receipts, paging) without a cache.
 */

import type {
  ChangeResult,
  ChatRepository,
  DeliveredResult,
  MailboxSummary,
  MessagePage,
  MessageRecord,
  ModeratorDeletion,
  NewMessage,
  NewReport,
  ReadReceipt,
  ReadResult,
  Relation,
  ReportResult,
  Seqs,
  SignIn,
  SnapshotMessage,
  StoredMessage,
  StoreResult,
  TokenAccess,
  Update,
  UpdatePage,
} from "./repository.ts";
import { ClientMessageIdReusedError, SNAPSHOT_AROUND, UnavailableError } from "./repository.ts";

/** A stored report (the columns of `chat_reports`). */
export interface MemoryReport extends NewReport {
  reportId: number;
  reportedUserId: number;
  snapshot: SnapshotMessage[];
  createdAt: Date;
}

/** One entry of a user's update stream, as stored (messages are looked up when read). */
type Entry =
  | { kind: "message" | "message_updated" | "delivered"; messageId: number }
  | { kind: "read"; read: ReadReceipt }
  | { kind: "settings_updated"; settings: unknown };
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
  /** In id order (ids are 1, 2, 3, …). */
  readonly reports: MemoryReport[] = [];
  /** User id → settings as stored (v1.2); mutes by friend id, times in ms. */
  readonly userSettings = new Map<number, {
    dndUntil: number | undefined;
    appearOffline: boolean;
    lastSeenAt: number | undefined;
    mutes: Map<number, number>;
  }>();
  /** User id → that user's updates; `seq` is the index + 1. */
  readonly updates = new Map<number, Entry[]>();
  /** `user:message` keys of messages deleted for that user. */
  readonly hidden = new Set<string>();
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

  async signIn(userId: number, issuedAt: number): Promise<SignIn> {
    const access = await this.tokenAccess(userId, issuedAt);
    if (access !== "ok") return { access };
    const [friends, mailbox, settings] = await Promise.all([
      this.friendIds(userId),
      this.mailboxSummary(userId),
      this.settings(userId),
    ]);
    return { access, friends, mailbox, settings, seen: await this.seenStates(friends) };
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

  /** Friends and neither blocked the other: receipts reach the other user. */
  #mayTell(a: number, b: number): boolean {
    return this.friendships.some((f) =>
      f.status === "approved" && ((f.a === a && f.b === b) || (f.a === b && f.b === a))
    ) && !this.#blockedEitherWay(a, b);
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
          const textAsSent = original.editedAt === undefined &&
            original.deletedAt === undefined && original.moderation !== "replaced";
          if (
            original.recipientUserId !== message.recipientUserId ||
            (textAsSent && original.messageText !== message.messageText)
          ) {
            throw new ClientMessageIdReusedError(
              "client_message_id was already used for another message",
            );
          }
          const seq = this.#seqOf(original.senderUserId, "message", original.messageId);
          return {
            message: stored(original),
            duplicate: true,
            seqs: seq === undefined ? new Map() : new Map([[original.senderUserId, seq]]),
          };
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
      const seqs = this.#append(
        [row.senderUserId, row.recipientUserId],
        { kind: "message", messageId: row.messageId },
      );
      return { message: stored(row), duplicate: false, seqs };
    });
  }

  messageByClientId(
    senderUserId: number,
    clientMessageId: string,
  ): Promise<StoredMessage | undefined> {
    return this.guard(() => {
      const row = this.messages.find((m) =>
        m.senderUserId === senderUserId && m.clientMessageId === clientMessageId
      );
      if (row === undefined) return undefined;
      return { ...stored(row), moderation: row.moderation };
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
        seq: this.updates.get(userId)?.length ?? 0,
      };
      for (const m of this.messages) {
        if (m.senderUserId === userId || m.recipientUserId === userId) {
          summary.lastMessageId = m.messageId;
        }
        if (
          m.recipientUserId === userId && !m.isRead && m.deletedAt === undefined &&
          !this.hidden.has(`${userId}:${m.messageId}`)
        ) {
          summary.unreadCount++;
          const by = summary.unreadBySender;
          by.set(m.senderUserId, (by.get(m.senderUserId) ?? 0) + 1);
        }
      }
      return summary;
    });
  }

  messagesAfter(userId: number, afterMessageId: number, limit: number): Promise<MessagePage> {
    return this.guard(() => {
      // In the memory store ids follow commit order, so the stream adds no
      // message with a smaller id than `afterMessageId` unless one changed later.
      const entries = this.updates.get(userId) ?? [];
      const from = entries.findIndex((e) => "messageId" in e && e.messageId === afterMessageId);
      const later = new Set<number>();
      entries.forEach((e, i) => {
        if (i > from && from >= 0 && "messageId" in e) later.add(e.messageId);
      });
      return page(
        this.messages.filter((m) =>
          (m.messageId > afterMessageId || later.has(m.messageId)) &&
          (m.senderUserId === userId || m.recipientUserId === userId) &&
          !this.hidden.has(`${userId}:${m.messageId}`)
        ),
        limit,
      );
    });
  }

  updatesAfter(userId: number, afterSeq: number, limit: number): Promise<UpdatePage> {
    return this.guard(() => {
      const entries = this.updates.get(userId) ?? [];
      const chosen = entries.slice(afterSeq, afterSeq + limit);
      return {
        updates: chosen.map((e, i) => this.#update(userId, afterSeq + i + 1, e)),
        hasMore: entries.length > afterSeq + limit,
        seq: entries.length,
      };
    });
  }

  editMessage(
    userId: number,
    messageId: number,
    text: string,
    windowS: number,
    moderation?: "replaced" | "unchecked",
  ): Promise<ChangeResult> {
    return this.guard((): ChangeResult => {
      const m = this.messages[messageId - 1];
      if (
        m === undefined || m.senderUserId !== userId || this.hidden.has(`${userId}:${messageId}`)
      ) {
        return { status: "not_found" };
      }
      if (m.deletedAt !== undefined) return { status: "message_deleted" };
      if (windowS <= 0 || this.now() > m.sentAt.getTime() + windowS * 1000) {
        return { status: "edit_window_passed" };
      }
      if (m.messageText === text) return { status: "unchanged", message: { ...m } };
      m.messageText = text;
      m.editedAt = new Date(this.now());
      m.moderation = moderation;
      const seqs = this.#append([m.senderUserId, m.recipientUserId], {
        kind: "message_updated",
        messageId,
      });
      return { status: "changed", message: { ...m }, seqs };
    });
  }

  deleteMessage(
    userId: number,
    messageId: number,
    scope: "everyone" | "me",
  ): Promise<ChangeResult> {
    return this.guard((): ChangeResult => {
      const m = this.messages[messageId - 1];
      const mine = m !== undefined &&
        (scope === "everyone"
          ? m.senderUserId === userId
          : m.senderUserId === userId || m.recipientUserId === userId);
      if (!mine) return { status: "not_found" };
      return this.#delete(m, userId, scope);
    });
  }

  messageFor(userId: number, messageId: number): Promise<MessageRecord | undefined> {
    return this.guard(() => {
      const m = this.messages[messageId - 1];
      if (m === undefined || this.hidden.has(`${userId}:${messageId}`)) return undefined;
      if (m.senderUserId !== userId && m.recipientUserId !== userId) return undefined;
      return { ...m };
    });
  }

  deleteAsModerator(messageIds: readonly number[]): Promise<ModeratorDeletion[]> {
    return this.guard(() =>
      [...new Set(messageIds)].flatMap((id) => {
        const m = this.messages[id - 1];
        if (m === undefined) return [];
        const result = this.#delete(m, m.senderUserId, "everyone");
        return result.status === "changed" ? [{ message: result.message, seqs: result.seqs }] : [];
      })
    );
  }

  #delete(m: MessageRecord, userId: number, scope: "everyone" | "me"): ChangeResult {
    if (scope === "me") {
      const key = `${userId}:${m.messageId}`;
      if (this.hidden.has(key)) {
        return { status: "unchanged", message: { ...m, messageText: "", deletedForMe: true } };
      }
      this.hidden.add(key);
      const seqs = this.#append([userId], { kind: "message_updated", messageId: m.messageId });
      return { status: "changed", message: { ...m, messageText: "", deletedForMe: true }, seqs };
    }
    if (m.deletedAt !== undefined) return { status: "unchanged", message: { ...m } };
    m.messageText = "";
    m.deletedAt = new Date(this.now());
    const seqs = this.#append([m.senderUserId, m.recipientUserId], {
      kind: "message_updated",
      messageId: m.messageId,
    });
    return { status: "changed", message: { ...m }, seqs };
  }

  /** Appends one update to each user's stream (once per user); their seqs. */
  #append(userIds: number[], entry: Entry): Seqs {
    const seqs = new Map<number, number>();
    for (const id of new Set(userIds)) {
      const entries = this.updates.get(id) ?? [];
      entries.push(entry);
      this.updates.set(id, entries);
      seqs.set(id, entries.length);
    }
    return seqs;
  }

  /** The seq of the first update of `kind` for this message in a user's stream. */
  #seqOf(userId: number, kind: Entry["kind"], messageId: number): number | undefined {
    const i = (this.updates.get(userId) ?? []).findIndex((e) =>
      e.kind === kind && "messageId" in e && e.messageId === messageId
    );
    return i < 0 ? undefined : i + 1;
  }

  #update(userId: number, seq: number, entry: Entry): Update {
    switch (entry.kind) {
      case "read":
        return { seq, kind: "read", read: entry.read };
      case "settings_updated":
        return { seq, kind: "settings_updated", settings: entry.settings };
      case "delivered": {
        const m = this.messages[entry.messageId - 1]!;
        return {
          seq,
          kind: "delivered",
          messageId: m.messageId,
          recipientUserId: m.recipientUserId,
        };
      }
      default: {
        const m = this.messages[entry.messageId - 1]!;
        const hidden = this.hidden.has(`${userId}:${m.messageId}`);
        const message = hidden ? { ...m, messageText: "", deletedForMe: true } : { ...m };
        return { seq, kind: entry.kind, message };
      }
    }
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
          !this.hidden.has(`${userId}:${m.messageId}`) &&
          ((m.senderUserId === userId && m.recipientUserId === friendUserId) ||
            (m.senderUserId === friendUserId && m.recipientUserId === userId))
        ).reverse(),
        limit,
      )
    );
  }

  markRead(readerUserId: number, friendUserId: number, upToMessageId: number): Promise<
    ReadResult | undefined
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
      if (!changed) return undefined;
      // The friend's sequence holds the receipt only while the two may see each other.
      const told = this.#mayTell(readerUserId, friendUserId) ? [friendUserId] : [];
      const seqs = this.#append([readerUserId, ...told], {
        kind: "read",
        read: { readerUserId, friendUserId, upToMessageId, readAt },
      });
      return { readAt, seqs };
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
      const told = this.#mayTell(m.senderUserId, m.recipientUserId) ? [m.senderUserId] : [];
      const seqs = this.#append([...told, m.recipientUserId], {
        kind: "delivered",
        messageId,
      });
      return { status: "first", senderUserId: m.senderUserId, seqs };
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
      const seq = this.#append([userId], { kind: "settings_updated", settings: body(settings) })
        .get(userId);
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
