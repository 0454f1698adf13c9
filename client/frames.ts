/**
 * @module frames
 * The server frames of the chat protocol (docs/protocol.md, v1.1 and v1.2) and the client's
 * events, as types. v1.2 fields are optional where a v1.1 server does not send them (the SDK works
 * against both, and the server's frame builders `satisfies` these types).
 */

/** A stored chat message, as in `chat_message` and `message_sent.data` (docs/protocol.md). */
export interface ChatMessage {
  message_id: number;
  sender_user_id: number;
  recipient_user_id: number;
  message_text: string;
  /** ISO 8601 in UTC. */
  sent_at: string;
  client_message_id?: string;
  /** v1.2: ISO 8601 in UTC, when the sender last edited it. */
  edited_at?: string;
  /** v1.2: ISO 8601 in UTC, when it was deleted for everyone (`message_text` is then ""). */
  deleted_at?: string;
  /** v1.2: deleted by this user for themselves (`message_text` is then ""). */
  deleted_for_me?: boolean;
}

/** A message read back from the database (`sync_result`, `history_result`), v1.1. */
export interface StoredMessage extends ChatMessage {
  is_read: boolean;
  /** ISO 8601 in UTC, when a recipient's device first reported it shown. */
  delivered_at?: string;
  /** ISO 8601 in UTC, when the recipient marked it read. */
  read_at?: string;
}

export interface AuthenticatedFrame {
  type: "authenticated";
  user_id: number;
  online_friends: number[];
  /** v1.1 (a v1.0 server omits the four fields below): messages to the user not yet read. */
  unread_count?: number;
  /** v1.1: unread counts by sender id (`"7": 3`), non-zero ones only. */
  unread_by_friend?: Record<string, number>;
  /** v1.1: largest message id to or from the user, 0 when none. */
  last_message_id?: number;
  /** v1.1: ISO 8601 UTC; the session ends then unless `reauthenticate` extends it. */
  session_expires_at?: string;
  /** v1.2: the connection's limits as configured (the SDK paces its messages to them). */
  limits?: ChatLimits;
  /** v1.2: the user's settings (mute, do-not-disturb, appear offline). */
  settings?: ChatSettings;
  /** v1.2: friend id → when last seen (ISO 8601 UTC), for friends offline and seen since v1.2. */
  last_seen?: Record<string, string>;
  /** v1.2: the user's latest update number, 0 when none. */
  seq?: number;
}
/**
 * A user's settings (v1.2): muted friends by id with until when, do-not-disturb until when
 * (`null`: not in it), and whether friends see the user as offline. Expired ones are left out.
 */
export interface ChatSettings {
  muted: Record<string, string>;
  dnd_until: string | null;
  appear_offline: boolean;
}
/** The user's settings changed (on this device or another): v1.2. */
export interface SettingsUpdatedFrame {
  type: "settings_updated";
  settings: ChatSettings;
  /** The change's number in the user's update sequence. */
  seq?: number;
}
/** The limits of one connection (`authenticated.limits`, v1.2). */
export interface ChatLimits {
  /** Chat messages per second, on average (`CHAT_RATE_PER_S`). */
  chat_per_s: number;
  /** Chat messages accepted at once (`CHAT_RATE_BURST`). */
  chat_burst: number;
  /** Frames of any type per second (`FRAME_RATE_PER_S`). */
  frames_per_s: number;
  /** Longest text in Unicode code points, after trimming (`MAX_MESSAGE_CHARS`). */
  max_message_chars: number;
}
export interface AuthErrorFrame {
  type: "auth_error";
  message: string;
}
export interface ChatMessageFrame extends ChatMessage {
  type: "chat_message";
  /** v1.2: this update's number in the receiving user's sequence. */
  seq?: number;
}
export interface MessageSentFrame {
  type: "message_sent";
  data: ChatMessage;
  /** v1.2: the update's number in the sender's sequence. */
  seq?: number;
}
/**
 * v1.2: a message was edited, deleted for everyone, or deleted for this user (`deleted_for_me`),
 * in its new state (`message_text` "" once deleted). Without `seq` it is the answer to an edit or
 * deletion that changed nothing.
 */
export interface MessageUpdatedFrame {
  type: "message_updated";
  message: ChatMessage;
  /** Absent on the answer to an edit or deletion that changed nothing. */
  seq?: number;
}
/**
 * v1.2: one update of the user's sequence, live or as `sync {after_seq}` returns it (the live frame
 * it was).
 */
export type UpdateFrame =
  | (ChatMessageFrame & Partial<StoredMessage>)
  | MessageSentFrame
  | MessageUpdatedFrame
  | ReadFrame
  | DeliveredFrame
  | SettingsUpdatedFrame;
/** v1.2: the answer to `sync {after_seq}`. */
export interface SyncUpdatesResultFrame {
  type: "sync_result";
  /** Oldest first, each with its `seq`. */
  updates: UpdateFrame[];
  has_more: boolean;
  /** The user's latest seq when the page was read. */
  seq: number;
}
export interface TypingFrame {
  type: "typing";
  /** The typist. */
  user_id: number;
  is_typing: boolean;
}
export interface PresenceFrame {
  type: "presence";
  user_id: number;
  status: "online" | "offline";
  /** v1.2, with `offline`: ISO 8601 UTC, when the friend was last seen. */
  last_seen_at?: string;
}
export interface PongFrame {
  type: "pong";
}
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  client_message_id?: string;
  /** v1.2, with `rate_limited`: milliseconds until the next such frame would be accepted. */
  retry_after_ms?: number;
}
/**
 * Why `editMessage()` or `deleteMessage()` failed (the `code` of its `ChatSendError`), v1.2:
 * `not_found` (no such message, or not one this user may change: the server does not tell them
 * apart), `edit_window_passed`, `message_deleted` (an edit of a deleted message), `moderated`
 * (the moderation hook rejected the new text), the text rules of `chat_message`
 * (`message_empty`, `message_too_long`, `invalid_field`), `unavailable` (nothing changed),
 * `rate_limited`, `unknown_type` (a v1.1 server, which cannot edit or delete); and from the
 * client `timeout`, `closed`, `session_expired`.
 */
export type ChatUpdateErrorCode =
  | "not_found"
  | "edit_window_passed"
  | "message_deleted"
  | "moderated"
  | "message_empty"
  | "message_too_long"
  | "invalid_field"
  | "missing_fields"
  | "unavailable"
  | "rate_limited"
  | "unknown_type"
  | "timeout"
  | "closed"
  | "session_expired";
/**
 * A failure inside the client, emitted as an `error` event beside the server's `error` frames:
 * `get_token_failed` (getToken threw or returned no string), `reauth_failed` (the server refused
 * the refreshed token), `sync_failed` (a catch-up page was refused; the client reconnects),
 * `connect_failed` (the socket closed before it opened: `failure` says why, as far as the runtime
 * tells), `connection_lost` (an open connection closed without `close()`: `close_code` and
 * `close_reason`, or it stopped answering pings). Each connection failure is followed by a
 * reconnect, and its `message` is also the `state` event's `reason`.
 */
export interface ClientErrorEvent {
  type: "error";
  code: "get_token_failed" | "reauth_failed" | "sync_failed" | "connect_failed" | "connection_lost";
  message: string;
  /** What was thrown, or what the runtime said of a connection failure, when anything was. */
  cause?: unknown;
  /** `connect_failed`: what failed, as far as the runtime says. */
  failure?: ConnectFailure;
  /** `connect_failed`: the URL it could not connect to. */
  url?: string;
  /** `connect_failed` with `failure: "upgrade_refused"`: the HTTP status the upgrade got. */
  http_status?: number;
  /** `connection_lost`: the WebSocket close code (1006: no close frame came). */
  close_code?: number;
  /** `connection_lost`: the close frame's reason, "" when none. */
  close_reason?: string;
}
/**
 * Why a connection could not be opened: `refused` (nothing listens there, or unreachable), `dns`
 * (the name did not resolve), `tls` (handshake or certificate), `upgrade_refused` (an HTTP answer
 * instead of the upgrade: `http_status`), `unknown` (a browser, which tells nothing).
 */
export type ConnectFailure = "refused" | "dns" | "tls" | "upgrade_refused" | "unknown";

/** The answer to the v1.1 form of `sync` (`after_message_id`); v1.2's is `SyncUpdatesResultFrame`. */
export interface SyncResultFrame {
  type: "sync_result";
  /** Oldest first. */
  messages: StoredMessage[];
  has_more: boolean;
}
export interface HistoryResultFrame {
  type: "history_result";
  friend_user_id: number;
  /** Newest first. */
  messages: StoredMessage[];
  has_more: boolean;
}
/** `user_id` read the messages from `friend_user_id` up to `up_to_message_id`. */
export interface ReadFrame {
  type: "read";
  user_id: number;
  friend_user_id: number;
  up_to_message_id: number;
  read_at: string;
  /** v1.2: this update's number in the receiving user's sequence. */
  seq?: number;
}
/** A device of `user_id` (the recipient) has shown message `message_id`. */
export interface DeliveredFrame {
  type: "delivered";
  message_id: number;
  user_id: number;
  /** v1.2: this update's number in the receiving user's sequence. */
  seq?: number;
}
export interface ReauthenticatedFrame {
  type: "reauthenticated";
  session_expires_at: string;
}
/** The server ended the session (token expiry, deactivation, `POST /disconnect`). */
export interface SessionExpiredFrame {
  type: "session_expired";
  reason?: string;
}

/** Unread counts as the client knows them (from `authenticated`, then kept up to date). */
export interface UnreadEvent {
  type: "unread";
  total: number;
  /** By sender id, non-zero ones only. */
  by_friend: Record<string, number>;
}
/**
 * A catch-up is complete: every message since the last one seen (v1.1), or every update since the
 * last one applied (v1.2), was emitted. After each (re)connect, and, on a v1.2 server, after each
 * catch-up that filled a gap in the live updates.
 */
export interface SyncedEvent {
  type: "synced";
  /** Messages emitted by this catch-up as `chat_message` (duplicates left out). */
  count: number;
  /** The id the next v1.1 catch-up starts after. */
  last_message_id: number;
  /** v1.2: the largest update number applied (`client.lastSeq`). */
  seq?: number;
  /** v1.2: updates applied by this catch-up (messages, edits, deletions, receipts, settings). */
  updates?: number;
}
/**
 * The game backend's own push (`chat.php`'s `{type: "chat_message", message}` through `/notify`),
 * emitted as the `backend_chat_message` event. Its `message` comes from the backend's database:
 * its ids are not this server's, so it takes no part in catch-up or deduplication.
 */
export interface BackendChatMessageFrame {
  type: "chat_message";
  message: {
    message_id?: number | string;
    sender_user_id: number | string;
    recipient_user_id: number | string;
    [field: string]: unknown;
  };
}
/** Any frame, including event types pushed by the backend through `/notify`. */
export interface UnknownFrame {
  type: string;
  [field: string]: unknown;
}

/**
 * `idle` before `connect()`; `connecting` while the socket opens; `authenticating` from open
 * until `authenticated`; `open` when messages go out directly; `waiting` during a reconnect
 * delay; `expired` after the server's `session_expired` (no reconnecting until `connect()` is
 * called again); `closed` after `close()` (final).
 */
export type ConnectionState =
  | "idle"
  | "connecting"
  | "authenticating"
  | "open"
  | "waiting"
  | "expired"
  | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Failed attempts since the last successful authentication. */
  attempt: number;
  /** With `waiting`: how long until the next attempt. */
  delayMs?: number;
  /** Why the connection was lost, when it was. */
  reason?: string;
}

/** Events of `on()`: one per server frame type, `state`, and `frame` (every frame received). */
export interface ChatClientEvents {
  authenticated: AuthenticatedFrame;
  auth_error: AuthErrorFrame;
  /** Live and caught-up messages, each once (deduplicated by `message_id`). */
  chat_message: ChatMessageFrame & Partial<StoredMessage>;
  backend_chat_message: BackendChatMessageFrame;
  message_sent: MessageSentFrame;
  typing: TypingFrame;
  presence: PresenceFrame;
  pong: PongFrame;
  error: ErrorFrame | ClientErrorEvent;
  sync_result: SyncResultFrame | SyncUpdatesResultFrame;
  history_result: HistoryResultFrame;
  read: ReadFrame;
  delivered: DeliveredFrame;
  /** v1.2: edited, deleted for everyone or deleted for me, each once, in update order. */
  message_updated: MessageUpdatedFrame;
  reauthenticated: ReauthenticatedFrame;
  session_expired: SessionExpiredFrame;
  /** v1.2: the user's settings changed (on any device); `client.settings` has them too. */
  settings_updated: SettingsUpdatedFrame;
  unread: UnreadEvent;
  synced: SyncedEvent;
  state: StateChange;
  frame: UnknownFrame;
}
