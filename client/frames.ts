/**
 * @module frames
 * The server frames of the chat protocol (shared/PROTOCOL.md) and the client's events, as types.
 */

/** A stored chat message, as in `chat_message` and `message_sent.data` (PROTOCOL.md). */
export interface ChatMessage {
  message_id: number;
  sender_user_id: number;
  recipient_user_id: number;
  message_text: string;
  /** ISO 8601 in UTC. */
  sent_at: string;
  client_message_id?: string;
}

export interface AuthenticatedFrame {
  type: "authenticated";
  user_id: number;
  online_friends: number[];
}
export interface AuthErrorFrame {
  type: "auth_error";
  message: string;
}
export interface ChatMessageFrame extends ChatMessage {
  type: "chat_message";
}
export interface MessageSentFrame {
  type: "message_sent";
  data: ChatMessage;
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
}
export interface PongFrame {
  type: "pong";
}
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  client_message_id?: string;
}
/** Any frame, including event types pushed by the backend through `/notify`. */
export interface UnknownFrame {
  type: string;
  [field: string]: unknown;
}

/**
 * `idle` before `connect()`; `connecting` while the socket opens; `authenticating` from open
 * until `authenticated`; `open` when messages go out directly; `waiting` during a reconnect
 * delay; `closed` after `close()` (final).
 */
export type ConnectionState =
  | "idle"
  | "connecting"
  | "authenticating"
  | "open"
  | "waiting"
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
  chat_message: ChatMessageFrame;
  message_sent: MessageSentFrame;
  typing: TypingFrame;
  presence: PresenceFrame;
  pong: PongFrame;
  error: ErrorFrame;
  state: StateChange;
  frame: UnknownFrame;
}
