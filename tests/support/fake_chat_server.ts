/**
 * @module fake_chat_server
 * An in-process WebSocket server that speaks the client-facing part of docs/protocol.md (v1.1)
 * from memory, for testing the SDK's catch-up, history, receipts and session lifetime without a
 * database. The real server is tested against the same SDK in tests/client_test.ts; this fake
 * adds the faults a real one cannot be asked for on cue (a lost live frame, a refused page, a
 * lost acknowledgement).
 */

interface Stored {
  message_id: number;
  sender_user_id: number;
  recipient_user_id: number;
  message_text: string;
  sent_at: string;
  client_message_id?: string;
  is_read: boolean;
  read_at?: string;
  delivered_at?: string;
}

interface Connection {
  ws: WebSocket;
  userId: number | undefined;
  expiry: ReturnType<typeof setTimeout> | undefined;
}

type Frame = Record<string, unknown> & { type: string };

export interface FakeChatServer {
  url: string;
  messages: Stored[];
  /** Every frame clients sent, with the user it came from (undefined before authentication). */
  received: { userId: number | undefined; frame: Frame }[];
  /** Connections opened so far. */
  readonly connections: number;
  /** A token for `userId` that the server accepts until `ttlMs` from now. */
  token(userId: number, ttlMs?: number): string;
  /** Stores a message as another node would; `live: false` loses its live frames. */
  store(from: number, to: number, text: string, options?: { live?: boolean }): Stored;
  /** Answers the next frame of `type` with `error` `code` instead. */
  refuseNext(type: string, code: string): void;
  /** Runs `hook` (once) before answering the next `sync`. */
  beforeNextSync(hook: () => void): void;
  /** Cuts every connection of `userId` after the next message it sends is stored. */
  cutBeforeNextAck(userId: number): void;
  /** Sends `frame` as it is to every connection of `userId` (what `/notify` does). */
  push(userId: number, frame: Frame): void;
  /** Cuts every connection of `userId` (no `session_expired`: a network drop). */
  cut(userId: number): void;
  /** What `POST /disconnect` does: `session_expired`, then close 1008. */
  disconnect(userId: number, reason?: string): void;
  close(): Promise<void>;
}

export function startFakeChatServer(): FakeChatServer {
  const tokens = new Map<string, { userId: number; expiresAt: number }>();
  const connections = new Set<Connection>();
  const messages: Stored[] = [];
  const received: FakeChatServer["received"] = [];
  const refusals = new Map<string, string>();
  const cutAfterStore = new Set<number>();
  let syncHook: (() => void) | undefined;
  let opened = 0;
  let nextId = 1;
  let nextToken = 1;

  const send = (c: Connection, frame: Frame) => {
    if (c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(frame));
  };
  const ofUser = (userId: number) => [...connections].filter((c) => c.userId === userId);
  const toUser = (userId: number, frame: Frame, except?: Connection) => {
    for (const c of ofUser(userId)) if (c !== except) send(c, frame);
  };
  const wire = (m: Stored) => {
    const { is_read: _r, read_at: _a, delivered_at: _d, ...rest } = m;
    return rest;
  };
  const store = (from: number, to: number, text: string, clientId?: string): Stored => {
    const m: Stored = {
      message_id: nextId++,
      sender_user_id: from,
      recipient_user_id: to,
      message_text: text,
      sent_at: new Date().toISOString(),
      is_read: false,
      ...(clientId === undefined ? {} : { client_message_id: clientId }),
    };
    messages.push(m);
    return m;
  };
  const end = (c: Connection, reason?: string) => {
    send(c, { type: "session_expired", ...(reason === undefined ? {} : { reason }) });
    c.ws.close(1008, "session expired");
  };
  const sessionUntil = (c: Connection, expiresAt: number) => {
    clearTimeout(c.expiry);
    c.expiry = setTimeout(() => end(c), Math.max(0, expiresAt - Date.now()));
    return new Date(expiresAt).toISOString();
  };

  const handlers: Record<string, (c: Connection, f: Frame, me: number) => void> = {
    chat_message(c, f, me) {
      const to = Number(f.recipient_user_id);
      const clientId = f.client_message_id as string | undefined;
      const known = messages.find((m) =>
        clientId !== undefined && m.sender_user_id === me && m.client_message_id === clientId
      );
      const m = known ?? store(me, to, String(f.message_text).trim(), clientId);
      if (cutAfterStore.delete(me)) return ofUser(me).forEach((x) => x.ws.close(4999, "cut"));
      if (known === undefined) {
        toUser(to, { type: "chat_message", ...wire(m) });
        toUser(me, { type: "chat_message", ...wire(m) }, c);
      }
      send(c, { type: "message_sent", data: wire(m) });
    },
    sync(c, f, me) {
      const hook = syncHook;
      syncHook = undefined;
      hook?.();
      const limit = Number(f.limit ?? 100);
      const mine = messages.filter((m) =>
        (m.sender_user_id === me || m.recipient_user_id === me) &&
        m.message_id > Number(f.after_message_id)
      );
      send(c, {
        type: "sync_result",
        messages: mine.slice(0, limit),
        has_more: mine.length > limit,
      });
    },
    history(c, f, me) {
      const friend = Number(f.friend_user_id);
      const before = f.before_message_id === undefined ? Infinity : Number(f.before_message_id);
      const limit = Number(f.limit ?? 50);
      const between = messages.filter((m) =>
        m.message_id < before &&
        ((m.sender_user_id === me && m.recipient_user_id === friend) ||
          (m.sender_user_id === friend && m.recipient_user_id === me))
      ).reverse();
      send(c, {
        type: "history_result",
        friend_user_id: friend,
        messages: between.slice(0, limit),
        has_more: between.length > limit,
      });
    },
    read(c, f, me) {
      const friend = Number(f.friend_user_id);
      const upTo = Number(f.up_to_message_id);
      const readAt = new Date().toISOString();
      let changed = 0;
      for (const m of messages) {
        if (
          m.sender_user_id === friend && m.recipient_user_id === me && m.message_id <= upTo &&
          !m.is_read
        ) (m.is_read = true, m.read_at = readAt, changed++);
      }
      if (changed === 0) return;
      const frame = {
        type: "read",
        user_id: me,
        friend_user_id: friend,
        up_to_message_id: upTo,
        read_at: readAt,
      };
      toUser(friend, frame);
      toUser(me, frame, c);
    },
    delivered(c, f, me) {
      const m = messages.find((x) => x.message_id === Number(f.message_id));
      if (m === undefined || m.recipient_user_id !== me) {
        return send(c, { type: "error", code: "invalid_field", message: "message_id" });
      }
      if (m.delivered_at !== undefined) return;
      m.delivered_at = new Date().toISOString();
      toUser(m.sender_user_id, { type: "delivered", message_id: m.message_id, user_id: me });
    },
    reauthenticate(c, f, me) {
      const t = tokens.get(String(f.auth_token));
      if (t === undefined || t.userId !== me || t.expiresAt <= Date.now()) {
        return send(c, { type: "auth_error", message: "Invalid auth token" });
      }
      send(c, { type: "reauthenticated", session_expires_at: sessionUntil(c, t.expiresAt) });
    },
    typing() {},
  };

  const authenticate = (c: Connection, f: Frame) => {
    const t = tokens.get(String(f.auth_token));
    if (t === undefined || t.expiresAt <= Date.now()) {
      return send(c, { type: "auth_error", message: "Invalid auth token" });
    }
    const me = t.userId;
    c.userId = me;
    const unread: Record<string, number> = {};
    let total = 0;
    let last = 0;
    for (const m of messages) {
      if (m.sender_user_id === me || m.recipient_user_id === me) last = m.message_id;
      if (m.recipient_user_id === me && !m.is_read) {
        unread[m.sender_user_id] = (unread[m.sender_user_id] ?? 0) + 1;
        total++;
      }
    }
    send(c, {
      type: "authenticated",
      user_id: me,
      online_friends: [],
      unread_count: total,
      unread_by_friend: unread,
      last_message_id: last,
      session_expires_at: sessionUntil(c, t.expiresAt),
    });
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    const c: Connection = { ws: socket, userId: undefined, expiry: undefined };
    opened++;
    connections.add(c);
    socket.onclose = () => (clearTimeout(c.expiry), connections.delete(c));
    socket.onmessage = (event) => {
      const f = JSON.parse(String(event.data)) as Frame;
      received.push({ userId: c.userId, frame: f });
      const refusal = refusals.get(f.type);
      if (refusal !== undefined) {
        refusals.delete(f.type);
        return send(c, { type: "error", code: refusal, message: `refused ${f.type}` });
      }
      if (f.type === "ping") return send(c, { type: "pong" });
      if (f.type === "authenticate") return authenticate(c, f);
      if (c.userId === undefined) {
        return send(c, { type: "error", code: "not_authenticated", message: "Not authenticated" });
      }
      const handler = handlers[f.type];
      if (handler === undefined) {
        return send(c, { type: "error", code: "unknown_type", message: "Unknown message type" });
      }
      handler(c, f, c.userId);
    };
    return response;
  });

  return {
    url: `ws://127.0.0.1:${server.addr.port}/ws`,
    messages,
    received,
    get connections() {
      return opened;
    },
    token(userId, ttlMs = 3_600_000) {
      const token = `fake:${userId}:${nextToken++}`;
      tokens.set(token, { userId, expiresAt: Date.now() + ttlMs });
      return token;
    },
    store(from, to, text, options = {}) {
      const m = store(from, to, text);
      if (options.live !== false) {
        toUser(to, { type: "chat_message", ...wire(m) });
        toUser(from, { type: "chat_message", ...wire(m) });
      }
      return m;
    },
    refuseNext: (type, code) => void refusals.set(type, code),
    beforeNextSync: (hook) => void (syncHook = hook),
    cutBeforeNextAck: (userId) => void cutAfterStore.add(userId),
    push: (userId, frame) => toUser(userId, frame),
    cut: (userId) => ofUser(userId).forEach((c) => c.ws.close(4999, "cut")),
    disconnect: (userId, reason) => ofUser(userId).forEach((c) => end(c, reason)),
    async close() {
      for (const c of connections) (clearTimeout(c.expiry), c.ws.close(1001));
      await server.shutdown();
    },
  };
}
