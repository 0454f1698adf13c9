/**
 * @module session_harness
 * Sessions and their handlers in-process, the way a channel test drives a
 * channel with no transport: an in-memory repository, an in-memory bus behind
 * a real hub, and fake connections that record what the session sends. For
 * tests that need no real socket and no database.
 *
 *     const h = await SessionHarness.start();
 *     h.repository.befriend(1, 2);
 *     const alice = await h.join(1);
 *     alice.push({ type: "chat_message", recipient_user_id: 2, message_text: "hi" });
 *     await alice.next("message_sent");
 */

import { type Bus, MemoryCluster } from "../../src/bus/mod.ts";
import { loadConfig } from "../../src/config.ts";
import { Hub, TypingExpiry } from "../../src/hub/mod.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import { ServerMetrics } from "../../src/metrics.ts";
import {
  DeadlineQueue,
  LoginRates,
  Session,
  type SessionContext,
  UserWork,
} from "../../src/session/mod.ts";
import { MemoryRepository } from "../../src/store/mod.ts";
import { importTokenKey, signToken } from "../../src/token.ts";
import type { WsConnection } from "../../src/transport/mod.ts";

const SECRET = "session-harness-secret-0123456789abcdef";

type Frame = { type: string; [field: string]: unknown };

/** A connection that records what the session sends, and pushes frames into it. */
export class FakeSocket implements WsConnection {
  readonly sent: Frame[] = [];
  /** Set once the session closed the connection. */
  closed: { code: number; reason: string | undefined } | undefined;
  /** Bytes queued and not taken by the peer: stays 0 until `stopReading`. */
  bufferedAmount = 0;
  /** The most `bufferedAmount` has been. */
  peakBuffered = 0;
  #reading = true;
  #read = 0;
  #waiters: (() => void)[] = [];
  session!: Session;

  /** The peer stops reading: every frame sent from now on stays queued (`bufferedAmount`). */
  stopReading(): void {
    this.#reading = false;
  }

  send(text: string): void {
    if (this.closed) return;
    if (!this.#reading) {
      this.bufferedAmount += new TextEncoder().encode(text).length;
      this.peakBuffered = Math.max(this.peakBuffered, this.bufferedAmount);
    }
    this.sent.push(JSON.parse(text));
    for (const wake of this.#waiters.splice(0)) wake();
  }

  close(code: number, reason?: string): void {
    if (this.closed) return;
    this.closed = { code, reason };
    // As a transport does once the closing handshake ends.
    queueMicrotask(() => this.session.onClose(code));
    for (const wake of this.#waiters.splice(0)) wake();
  }

  terminate(): void {
    this.close(1006);
  }

  /** Sends one client frame (an object is serialized, a string goes as it is). */
  push(frame: Record<string, unknown> | string): void {
    this.session.onText(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The next frame not read yet (of `type`, skipping others), within `timeoutMs`. */
  async next(type?: string, timeoutMs = 2000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#read < this.sent.length) {
        const frame = this.sent[this.#read++]!;
        if (type === undefined || frame.type === type) return frame;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `no ${type ?? "frame"} within ${timeoutMs} ms; sent: ${
            JSON.stringify(this.sent.map((f) => f.type))
          }`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** Frames sent and not read yet, after letting pending work settle. */
  async unread(): Promise<Frame[]> {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const rest = this.sent.slice(this.#read);
    this.#read = this.sent.length;
    return rest;
  }
}

export interface HarnessOptions {
  /** Environment overrides for the limits (`CHAT_RATE_PER_S`, …). */
  env?: Record<string, string>;
  /** Where the sessions log (nowhere by default). */
  logger?: Logger;
  /** Wraps the hub's bus (e.g. to slow a join down). */
  wrapBus?: (bus: Bus) => Bus;
  /** The monotonic clock of the rates and of each user's page allowance (`performance.now`). */
  monotonic?: () => number;
}

export class SessionHarness {
  readonly #sockets: FakeSocket[] = [];

  private constructor(
    readonly context: SessionContext,
    readonly hub: Hub,
    readonly repository: MemoryRepository,
    readonly metrics: ServerMetrics,
  ) {}

  static async start(options: HarnessOptions = {}): Promise<SessionHarness> {
    const config = loadConfig({
      AUTH_SECRET: SECRET,
      DATABASE_URL: "postgres://unused",
      PRESENCE_GRACE_S: "0",
      ...options.env,
    });
    const repository = new MemoryRepository();
    const hub: Hub = new Hub({
      bus: (options.wrapBus ?? ((bus) => bus))(new MemoryCluster().node()),
      repository,
      logger: silentLogger,
      maxConnectionsPerUser: config.maxConnectionsPerUser,
      presenceGraceMs: 0,
    });
    const typing = new TypingExpiry(
      config.typingTimeoutS * 1000,
      (recipient, frame) => hub.sendToUser(recipient, frame, true),
    );
    const metrics = new ServerMetrics();
    const monotonic = options.monotonic ?? (() => performance.now());
    const context: SessionContext = {
      hub,
      repository,
      typing,
      tokenKey: await importTokenKey(SECRET),
      limits: config,
      logger: options.logger ?? silentLogger,
      metrics,
      now: Date.now,
      monotonic,
      expiries: new DeadlineQueue(Date.now),
      userWork: new UserWork(
        config.maxDbFramesPerUser,
        config.maxQueuedDbFramesPerUser,
        config.catchUpBytesPerS,
        monotonic,
      ),
      logins: new LoginRates(config, monotonic),
    };
    return new SessionHarness(context, hub, repository, metrics);
  }

  /** A session not yet authenticated, of a client at `address`. */
  connect(address = "192.0.2.1"): FakeSocket {
    const socket = new FakeSocket();
    socket.session = new Session(socket, this.context, {
      onUnauthenticatedEnd() {},
      onClosed() {},
    }, address);
    this.#sockets.push(socket);
    return socket;
  }

  /** A valid token for `userId`, signed now. */
  token(userId: number): Promise<string> {
    return this.tokenAt(userId, Math.floor(Date.now() / 1000));
  }

  /** A token for `userId` issued at `timestamp` (Unix seconds). */
  tokenAt(userId: number, timestamp: number): Promise<string> {
    return signToken(this.context.tokenKey, userId, timestamp);
  }

  /** A session authenticated as `userId` (added to the repository when unknown). */
  async join(userId: number, address?: string): Promise<FakeSocket> {
    if (!this.repository.users.has(userId)) this.repository.addUser(userId);
    const socket = this.connect(address);
    socket.push({ type: "authenticate", auth_token: await this.token(userId) });
    await socket.next("authenticated");
    return socket;
  }

  /** Closes every session and stops the timers. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.close(1001);
    await new Promise((resolve) => setTimeout(resolve, 0));
    await Promise.all(this.#sockets.map((s) => s.session.drain()));
    this.context.expiries.close();
    await this.hub.endGraces();
  }
}
