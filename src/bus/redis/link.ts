/**
 * @module bus/redis/link
 * One Redis connection of the bus, with a health check and a bound on waiting for replies.
 * On a Redis Cluster there is one per primary (`cluster.ts`: its probe connection,
 * whose health gates the commands for that primary's slots) and one per primary's subscriber
 * (`subscriptions.ts`).
 *
 * A connection can go silent without closing (a failover, a partition that drops packets
 * instead of resetting): ioredis then waits for replies forever, and a subscriber connection
 * just receives nothing. So every `intervalMs` the link sends a PING; when its reply has not
 * come within `deadlineMs`, the socket is reset and ioredis reconnects with its backoff. The
 * link is healthy from "ready" until the connection closes or a PING misses its deadline.
 *
 * Commands go through `run`: while the link is unhealthy they fail at once (nobody waits for
 * a timeout during an outage), and those in flight when the connection is lost fail at that
 * moment. ioredis must not re-send unanswered commands after reconnecting
 * (`autoResendUnfulfilledCommands: false`): their callers were already told they failed, and
 * a PUBLISH that Redis ran but whose reply was lost would be delivered twice.
 */

import type { Redis } from "ioredis";

/** Why a command was not answered: the link is down, or went down while waiting. */
export class RedisLinkDownError extends Error {
  override name = "RedisLinkDownError";
}

export interface RedisLinkOptions {
  /** How often a PING is sent. */
  intervalMs: number;
  /** How long a PING may wait for its reply before the connection counts as dead. */
  deadlineMs: number;
  /**
   * Told of every change of health, with the reason when it goes down, and of every answered
   * PING (`healthy` true again).
   */
  onHealth: (healthy: boolean, reason: string) => void;
  /**
   * Probe with TIME instead of PING, to learn Redis's clock (`redisNow`). Not on a subscriber
   * connection (RESP2 allows only PING there).
   */
  clock?: boolean | undefined;
}

interface Pending {
  reject(err: Error): void;
}

export class RedisLink {
  readonly conn: Redis;
  readonly #options: RedisLinkOptions;
  readonly #pending = new Set<Pending>();
  readonly #timer: ReturnType<typeof setInterval>;
  #healthy = false;
  /** Counts "ready" events, so that a late PING reply of an old connection is ignored. */
  #epoch = 0;
  /** When the unanswered PING of this epoch was sent. */
  #pingSentAt: number | undefined;
  #lastError = "";
  #stopped = false;
  #confirmedAt = -Infinity;
  /** Redis's clock minus ours, in ms; undefined until a TIME was answered. */
  #clockOffset: number | undefined;

  constructor(conn: Redis, options: RedisLinkOptions) {
    this.conn = conn;
    this.#options = options;
    conn.on("ready", () => {
      if (this.#stopped) return;
      this.#epoch++;
      this.#pingSentAt = undefined;
      this.#confirmedAt = performance.now();
      this.#setHealthy(true, "");
      if (options.clock) this.#ping(); // learn the clock now, not in a second
    });
    conn.on("error", (err: Error) => (this.#lastError = err.message));
    conn.on("close", () => this.#lost(this.#lastError || "connection closed"));
    this.#timer = setInterval(() => this.#check(), options.intervalMs);
  }

  /** Connected, and the last PING was answered in time. */
  get healthy(): boolean {
    return this.#healthy;
  }

  /**
   * When the latest proof that the connection works was sent (`performance.now()`): the
   * answered PING's sending, or the (re)connection.
   */
  get confirmedAt(): number {
    return this.#confirmedAt;
  }

  /** Redis's clock now (ms since the epoch), or undefined before it is known. */
  redisNow(): number | undefined {
    return this.#clockOffset === undefined ? undefined : Date.now() + this.#clockOffset;
  }

  /** Commands sent and not answered yet. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Runs `command` (on this connection, or on a cluster client routing it to this link's
   * primary). Rejects with `RedisLinkDownError` at once when the link is unhealthy, and as
   * soon as it goes down while the reply is awaited.
   */
  run<T>(command: () => Promise<T>): Promise<T> {
    if (!this.#healthy) return Promise.reject(new RedisLinkDownError("Redis is unreachable"));
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { reject };
      this.#pending.add(pending);
      let reply: Promise<T>;
      try {
        reply = command();
      } catch (err) {
        this.#pending.delete(pending);
        reject(err);
        return;
      }
      reply.then(resolve, reject).finally(() => this.#pending.delete(pending));
    });
  }

  /** Stops the health check (the caller closes the connection). */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#healthy = false;
    this.#failPending("the bus is closed");
  }

  #check(): void {
    if (this.conn.status !== "ready") return; // ioredis is reconnecting on its own
    const sentAt = this.#pingSentAt;
    if (sentAt === undefined) {
      this.#ping();
    } else if (performance.now() - sentAt >= this.#options.deadlineMs) {
      // A reply may be waiting unread behind a busy event loop: judge after one more turn.
      setTimeout(() => {
        if (this.#pingSentAt !== sentAt || this.conn.status !== "ready") return;
        this.#lost(`no reply to PING within ${this.#options.deadlineMs} ms`);
        this.#reset();
      }, 0);
    }
  }

  #ping(): void {
    const epoch = this.#epoch;
    const sentAt = performance.now();
    const sentWall = Date.now();
    this.#pingSentAt = sentAt;
    const probe = this.#options.clock ? this.conn.time() : this.conn.ping();
    probe.then((reply) => {
      if (epoch !== this.#epoch || this.#stopped) return;
      if (Array.isArray(reply)) {
        const redisMs = Number(reply[0]) * 1000 + Math.floor(Number(reply[1]) / 1000);
        this.#clockOffset = redisMs - (sentWall + Date.now()) / 2;
      }
      this.#pingSentAt = undefined;
      this.#confirmedAt = sentAt;
      if (!this.#healthy) this.#setHealthy(true, "");
      else this.#options.onHealth(true, "");
    }, () => {
      // Left unanswered: the deadline decides.
    });
  }

  /**
   * Drops the socket at once (with an RST where the runtime sends one); ioredis then
   * reconnects. Bytes already sent may still reach Redis later: see the payload's stamp.
   */
  #reset(): void {
    const stream = this.conn.stream as { resetAndDestroy?: () => void; destroy(): void };
    if (typeof stream.resetAndDestroy === "function") stream.resetAndDestroy();
    else stream.destroy();
  }

  #lost(reason: string): void {
    this.#pingSentAt = undefined;
    this.#setHealthy(false, reason);
    this.#failPending(`Redis connection lost: ${reason}`);
  }

  #failPending(message: string): void {
    if (this.#pending.size === 0) return;
    const err = new RedisLinkDownError(message);
    for (const pending of [...this.#pending]) pending.reject(err);
    this.#pending.clear();
  }

  #setHealthy(healthy: boolean, reason: string): void {
    if (healthy === this.#healthy) return;
    this.#healthy = healthy;
    if (healthy) this.#lastError = "";
    this.#options.onHealth(healthy, reason);
  }
}
