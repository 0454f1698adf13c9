/**
 * @module bus_redis
 * A `Bus` over Redis: pub/sub on per-user channels between nodes, plus cluster presence
 * (`bus_redis_presence.ts`) on a connection of its own.
 *
 * Delivery: `publish` sends on `<prefix>u:<userId>` with the origin node's id; each node
 * subscribes, on a second connection, to the channels of its local users and ignores what it
 * published itself, since the hub has already delivered locally. At most once: what is
 * published while Redis is unreachable is dropped (counted, logged).
 *
 * A Redis outage never throws out of the bus and never stops the process: both connections
 * reconnect with backoff; then every wanted channel is subscribed again and presence is
 * reconciled, its changes reported to `onPresenceChange`.
 */

import { Redis } from "ioredis";
import type { Bus, BusDelivery, PresenceStatus } from "./bus.ts";
import { RedisPresence } from "./bus_redis_presence.ts";
import { errorMessage, type Logger } from "./log.ts";

export interface RedisBusOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  url: string;
  /** Unique in the cluster; a random one by default. Letters, digits and `._:-` only. */
  nodeId?: string | undefined;
  /** Prefix of every key and channel, e.g. `geobeasts:chat:`. */
  keyPrefix: string;
  /** How long a node counts as live after its last heartbeat. */
  presenceTtlS: number;
  logger: Logger;
  /** Told of every publish's outcome (metrics). */
  onPublish?: ((ok: boolean) => void) | undefined;
}

/** Channels per SUBSCRIBE when resubscribing after a reconnect. */
const SUBSCRIBE_CHUNK = 1000;
const NODE_ID = /^[A-Za-z0-9._:-]{1,100}$/;

export class RedisBus implements Bus {
  readonly nodeId: string;
  readonly #cmd: Redis;
  readonly #sub: Redis;
  readonly #presence: RedisPresence;
  readonly #prefix: string;
  readonly #logger: Logger;
  readonly #onPublish: (ok: boolean) => void;
  #onDelivery: (delivery: BusDelivery) => void = () => {};
  /** Channels this node wants, whatever the subscriber connection's state. */
  readonly #channels = new Set<string>();
  #closed = false;
  #publishFailures = 0;
  #lastPublishLog = 0;

  private constructor(cmd: Redis, sub: Redis, nodeId: string, options: RedisBusOptions) {
    this.#cmd = cmd;
    this.#sub = sub;
    this.nodeId = nodeId;
    this.#prefix = options.keyPrefix;
    this.#logger = options.logger;
    this.#onPublish = options.onPublish ?? (() => {});
    this.#presence = new RedisPresence(cmd, {
      prefix: options.keyPrefix,
      nodeId,
      ttlMs: options.presenceTtlS * 1000,
      logger: options.logger,
    });
  }

  /** Connects both connections and registers the node; rejects when Redis is unreachable. */
  static async connect(options: RedisBusOptions): Promise<RedisBus> {
    const nodeId = options.nodeId ?? crypto.randomUUID();
    if (!NODE_ID.test(nodeId)) throw new RangeError(`Cannot use node id '${nodeId}'`);
    if (!(options.presenceTtlS > 0)) throw new RangeError("presenceTtlS must be positive");
    const clientOptions = {
      lazyConnect: true,
      // Fail fast while disconnected instead of queueing without bound: publish is at most
      // once anyway, and presence is reconciled after reconnecting.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 5000,
      // Our own resubscribe on "ready" covers channels added while disconnected too.
      autoResubscribe: false,
      retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000),
    };
    const cmd = new Redis(options.url, {
      ...clientOptions,
      connectionName: `chat-${nodeId}`,
      // The publishes of one tick (a message to its recipient and to the
      // sender's other devices, a presence fan-out) leave in one write.
      enableAutoPipelining: true,
    });
    const sub = new Redis(options.url, { ...clientOptions, connectionName: `chat-sub-${nodeId}` });
    const bus = new RedisBus(cmd, sub, nodeId, options);
    // The "error" event says why ("connect ECONNREFUSED ..."); connect() only "closed".
    let cause: unknown;
    for (const conn of [cmd, sub]) conn.on("error", (err: Error) => (cause ??= err));
    try {
      await Promise.all([cmd.connect(), sub.connect()]);
      await bus.#presence.start();
    } catch (err) {
      bus.#presence.stop();
      cmd.disconnect();
      sub.disconnect();
      const reason = cause ?? err;
      throw new Error(
        `Cannot connect to Redis: ${reason instanceof Error ? reason.message : String(reason)}`,
      );
    }
    bus.#watch();
    options.logger.info("bus_connected", { bus: "redis", node_id: nodeId });
    return bus;
  }

  onDelivery(handler: (delivery: BusDelivery) => void): void {
    this.#onDelivery = handler;
  }

  onPresenceChange(handler: (userId: number, status: PresenceStatus) => void): void {
    this.#presence.onChange = handler;
  }

  async subscribe(userId: number): Promise<void> {
    const channel = this.#channel(userId);
    this.#channels.add(channel);
    // When not ready, the "ready" handler subscribes every wanted channel.
    if (this.#closed || this.#sub.status !== "ready") return;
    try {
      await this.#sub.subscribe(channel);
    } catch (err) {
      this.#logger.warn("bus_subscribe_failed", { user_id: userId, error: errorMessage(err) });
    }
  }

  async unsubscribe(userId: number): Promise<void> {
    const channel = this.#channel(userId);
    this.#channels.delete(channel);
    if (this.#closed || this.#sub.status !== "ready") return;
    try {
      await this.#sub.unsubscribe(channel);
    } catch (err) {
      this.#logger.warn("bus_unsubscribe_failed", { user_id: userId, error: errorMessage(err) });
    }
  }

  publish(delivery: BusDelivery): void {
    if (this.#closed) return;
    const payload = `${this.nodeId}|${delivery.droppable ? "1" : "0"}${delivery.frame}`;
    try {
      this.#cmd.publish(this.#channel(delivery.userId), payload)
        .then(() => this.#onPublish(true), (err) => this.#publishFailed(err));
    } catch (err) {
      this.#publishFailed(err);
    }
  }

  join(userId: number): Promise<boolean> {
    return this.#closed ? Promise.resolve(false) : this.#presence.join(userId);
  }

  leave(userId: number): Promise<boolean> {
    return this.#closed ? Promise.resolve(false) : this.#presence.leave(userId);
  }

  online(userIds: readonly number[]): Promise<Set<number>> {
    return this.#presence.online(userIds);
  }

  // TEMPORARY (replaced by the cluster-wide count): this node's own count only.
  readonly #localConnections = new Map<number, number>();

  acquireConnection(userId: number, max: number): Promise<boolean> {
    const held = this.#localConnections.get(userId) ?? 0;
    if (held >= max) return Promise.resolve(false);
    this.#localConnections.set(userId, held + 1);
    return Promise.resolve(true);
  }

  releaseConnection(userId: number): Promise<void> {
    const held = (this.#localConnections.get(userId) ?? 0) - 1;
    if (held > 0) this.#localConnections.set(userId, held);
    else this.#localConnections.delete(userId);
    return Promise.resolve();
  }

  isReady(): boolean {
    return !this.#closed;
  }

  /** Leaves every user of this node (without announcing), stops the heartbeat, disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#channels.clear();
    await this.#presence.retire();
    await Promise.all([quit(this.#cmd), quit(this.#sub)]);
  }

  /**
   * Stops the heartbeat and drops both connections without leaving: what a crashed process
   * looks like to the rest of the cluster. For tests and failure drills.
   */
  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#channels.clear();
    this.#presence.stop();
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  #channel(userId: number): string {
    return `${this.#prefix}u:${userId}`;
  }

  #watch(): void {
    const userPrefix = `${this.#prefix}u:`;
    this.#sub.on("message", (channel: string, message: string) => {
      if (!this.#channels.has(channel)) return; // unsubscribed meanwhile
      const bar = message.indexOf("|");
      if (bar < 0 || message.slice(0, bar) === this.nodeId) return;
      const userId = Number(channel.slice(userPrefix.length));
      this.#onDelivery({
        userId,
        droppable: message[bar + 1] === "1",
        frame: message.slice(bar + 2),
      });
    });
    this.#sub.on("ready", () => void this.#resubscribe());
    // After a reconnect Redis may have lost or swept this node: reconcile now, not in TTL/3.
    this.#cmd.on("ready", () => void this.#presence.resync());
    for (const [name, conn] of [["commands", this.#cmd], ["subscriber", this.#sub]] as const) {
      let up = true;
      conn.on("error", (err: Error) => {
        if (!up || this.#closed) return;
        up = false;
        this.#logger.warn("redis_disconnected", { connection: name, error: errorMessage(err) });
      });
      conn.on("close", () => (up = false));
      conn.on("ready", () => {
        if (!up) this.#logger.info("redis_reconnected", { connection: name });
        up = true;
      });
    }
  }

  async #resubscribe(): Promise<void> {
    const channels = [...this.#channels];
    try {
      for (let i = 0; i < channels.length; i += SUBSCRIBE_CHUNK) {
        await this.#sub.subscribe(...channels.slice(i, i + SUBSCRIBE_CHUNK));
      }
    } catch (err) {
      // The connection dropped again; the next "ready" retries.
      this.#logger.warn("bus_resubscribe_failed", { error: errorMessage(err) });
    }
  }

  #publishFailed(err: unknown): void {
    this.#publishFailures++;
    this.#onPublish(false);
    const now = Date.now();
    if (this.#closed || now - this.#lastPublishLog < 10_000) return;
    this.#lastPublishLog = now;
    this.#logger.warn("bus_publish_failed", {
      failures: this.#publishFailures,
      error: errorMessage(err),
    });
  }
}

/** QUIT when connected, else just stop reconnecting. */
async function quit(conn: Redis): Promise<void> {
  try {
    if (conn.status === "ready") await conn.quit();
  } catch {
    // Closing anyway.
  } finally {
    conn.disconnect();
  }
}
