/**
 * @module bus/redis/bus
 * A `Bus` over Redis: pub/sub on per-user channels between nodes, plus cluster presence
 * (`presence.ts`) on a connection of its own.
 *
 * Delivery: `publish` sends on `<prefix>u:<userId>` with the origin node's id; each node
 * subscribes, on a second connection, to the channels of its local users and ignores what it
 * published itself, since the hub has already delivered locally. At most once: what is
 * published while Redis is unreachable is dropped (counted, logged).
 *
 * A frame for a user this node holds (a message's copy for the sender's other devices, a
 * recipient on this node) is published only when another subscriber listens: the publish
 * script (`publisher.ts`) asks Redis how many connections are subscribed to the
 * channel and publishes when there are more than this node's own. The question and the publish
 * are one step in Redis, so a node subscribed at that moment gets the frame exactly as with a
 * plain PUBLISH, and a user on this node alone costs no frame sent back to it. This node's
 * subscription counts as its own only once Redis confirmed it on the current subscriber
 * connection (`#confirmed`); until then, and whenever that connection is down, the frame is
 * published as before.
 *
 * A Redis outage never throws out of the bus and never stops the process. Each connection is
 * health-checked (`link.ts`: a PING every second that must be answered within 2.5 s),
 * so one that goes silent without closing is found within about 3.5 s and replaced. Both
 * connections reconnect with backoff; then every wanted channel is subscribed again and
 * presence and connection slots are reconciled, presence changes reported to
 * `onPresenceChange`. The bus is ready (`isReady`) while both connections are healthy and
 * every wanted channel is subscribed; each outage is logged once when it starts
 * (`redis_disconnected`, warn) and once when it ends (`redis_reconnected`, info).
 *
 * Publishes in flight are bounded (`publisher.ts`). What is published while Redis is
 * unreachable is dropped and counted; nothing is re-sent after a reconnect, so nothing arrives
 * twice or late.
 *
 * A publish can still reach Redis late: bytes the old socket had sent before it was reset
 * are retransmitted by TCP when the path comes back, and Redis runs them. So each payload
 * carries when it was sent, on Redis's clock (learnt by the health check's TIME, so nodes'
 * clocks need not agree), and a receiver drops a frame older than the health check's interval
 * plus deadline (3.5 s): longer than a connection may stay silent, so its publisher has reset
 * that connection and counted the publish failed.
 * Payload format: `payload.ts`.
 */

import { Redis } from "ioredis";
import type { Bus, BusDelivery, BusInspection, PresenceStatus } from "../bus.ts";
import { RedisLink, RedisLinkDownError } from "./link.ts";
import { decodePayload } from "./payload.ts";
import {
  MAX_PUBLISH_BYTES_IN_FLIGHT,
  MAX_PUBLISHES_IN_FLIGHT,
  RedisPublisher,
} from "./publisher.ts";
import { RedisPresence } from "./presence.ts";
import { RedisSlots } from "./slots.ts";
import { errorMessage, type Logger } from "../../log.ts";

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
  /** Told of every publish's outcome (metrics); a dropped one counts as failed. */
  onPublish?: ((ok: boolean) => void) | undefined;
  /** PING interval of the health check, default 1000 ms. */
  healthIntervalMs?: number | undefined;
  /** How long a PING may go unanswered before the connection is replaced, default 2500 ms. */
  healthDeadlineMs?: number | undefined;
  /** Publishes awaiting Redis's reply at most, default 8192. */
  maxPublishesInFlight?: number | undefined;
  /** Payload bytes of the publishes awaiting a reply at most, default 16 MiB. */
  maxPublishBytesInFlight?: number | undefined;
}

/** Channels per SUBSCRIBE when resubscribing after a reconnect. */
const SUBSCRIBE_CHUNK = 1000;
const HEALTH_INTERVAL_MS = 1000;
const HEALTH_DEADLINE_MS = 2500;

const NODE_ID = /^[A-Za-z0-9._:-]{1,100}$/;

export class RedisBus implements Bus {
  readonly nodeId: string;
  readonly #cmd: RedisLink;
  readonly #sub: RedisLink;
  readonly #presence: RedisPresence;
  readonly #slots: RedisSlots;
  readonly #prefix: string;
  readonly #logger: Logger;
  readonly #publisher: RedisPublisher;
  readonly #staleMs: number;
  #onDelivery: (delivery: BusDelivery) => void = () => {};
  /**
   * Channels this node wants, whatever the subscriber connection's state, each with the
   * number of the `subscribe` call that wanted it (a SUBSCRIBE answered for an older call,
   * since unsubscribed and wanted again, confirms nothing).
   */
  readonly #channels = new Map<string, number>();
  #calls = 0;
  /** Wanted channels whose SUBSCRIBE Redis answered on the current subscriber connection. */
  readonly #confirmed = new Set<string>();
  /** Every wanted channel is subscribed on the current subscriber connection. */
  #subscribed = true;
  /** When the current outage began (`performance.now()`), undefined while up. */
  #downSince: number | undefined;
  #closed = false;

  private constructor(cmd: Redis, sub: Redis, nodeId: string, options: RedisBusOptions) {
    const intervalMs = options.healthIntervalMs ?? HEALTH_INTERVAL_MS;
    const deadlineMs = options.healthDeadlineMs ?? HEALTH_DEADLINE_MS;
    this.#staleMs = intervalMs + deadlineMs;
    const health = (name: string) => ({
      intervalMs,
      deadlineMs,
      clock: name === "commands",
      onHealth: (healthy: boolean, reason: string) => this.#healthChanged(name, healthy, reason),
    });
    this.#cmd = new RedisLink(cmd, health("commands"));
    this.#sub = new RedisLink(sub, health("subscriber"));
    this.nodeId = nodeId;
    this.#prefix = options.keyPrefix;
    this.#logger = options.logger;
    this.#publisher = new RedisPublisher(this.#cmd, {
      nodeId,
      maxInFlight: options.maxPublishesInFlight ?? MAX_PUBLISHES_IN_FLIGHT,
      maxBytesInFlight: options.maxPublishBytesInFlight ?? MAX_PUBLISH_BYTES_IN_FLIGHT,
      logger: options.logger,
      onPublish: options.onPublish ?? (() => {}),
      isDown: () => this.#closed || this.#downSince !== undefined,
    });
    this.#slots = new RedisSlots(this.#cmd, { prefix: options.keyPrefix, nodeId });
    this.#presence = new RedisPresence(this.#cmd, {
      prefix: options.keyPrefix,
      nodeId,
      ttlMs: options.presenceTtlS * 1000,
      logger: options.logger,
      afterBeat: (reconciled) => this.#slots.writeBack(reconciled),
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
      // Their callers were told they failed; a re-sent PUBLISH could deliver twice, or late.
      autoResendUnfulfilledCommands: false,
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
      bus.#cmd.stop();
      bus.#sub.stop();
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
    const call = ++this.#calls;
    this.#channels.set(channel, call);
    // When not ready, the "ready" handler subscribes every wanted channel.
    if (this.#closed || !this.#sub.healthy) return;
    try {
      await this.#sub.run((conn) => conn.subscribe(channel));
      if (this.#channels.get(channel) === call) this.#confirmed.add(channel);
    } catch (err) {
      if (err instanceof RedisLinkDownError) return; // the next "ready" subscribes it
      this.#logger.warn("bus_subscribe_failed", { user_id: userId, error: errorMessage(err) });
    }
  }

  async unsubscribe(userId: number): Promise<void> {
    const channel = this.#channel(userId);
    this.#channels.delete(channel);
    this.#confirmed.delete(channel);
    if (this.#closed || !this.#sub.healthy) return;
    try {
      await this.#sub.run((conn) => conn.unsubscribe(channel));
    } catch (err) {
      if (err instanceof RedisLinkDownError) return; // a new connection has no subscriptions
      this.#logger.warn("bus_unsubscribe_failed", { user_id: userId, error: errorMessage(err) });
    }
  }

  publish(delivery: BusDelivery): void {
    if (this.#closed) return;
    const channel = this.#channel(delivery.userId);
    this.#publisher.publish(channel, delivery, this.#confirmed.has(channel));
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

  acquireConnection(userId: number, max: number): Promise<boolean> {
    return this.#closed ? Promise.resolve(false) : this.#slots.acquire(userId, max);
  }

  releaseConnection(userId: number): Promise<void> {
    return this.#closed ? Promise.resolve() : this.#slots.release(userId);
  }

  isReady(): boolean {
    return !this.#closed && this.#downSince === undefined;
  }

  async inspect(): Promise<BusInspection> {
    const started = performance.now();
    await this.#cmd.run((conn) => conn.ping());
    const roundTripMs = performance.now() - started;
    const nodes = await this.#presence.nodes();
    return {
      nodes: nodes.map((n) => ({ ...n, self: n.nodeId === this.nodeId })),
      roundTripMs,
    };
  }

  /** Leaves every user of this node (without announcing), stops the heartbeat, disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#channels.clear();
    this.#confirmed.clear();
    await this.#presence.retire();
    this.#slots.clear();
    this.#cmd.stop();
    this.#sub.stop();
    await Promise.all([quit(this.#cmd.conn), quit(this.#sub.conn)]);
  }

  /**
   * Stops the heartbeat and drops both connections without leaving: what a crashed process
   * looks like to the rest of the cluster. For tests and failure drills.
   */
  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#channels.clear();
    this.#confirmed.clear();
    this.#presence.stop();
    this.#cmd.stop();
    this.#sub.stop();
    this.#cmd.conn.disconnect();
    this.#sub.conn.disconnect();
  }

  #channel(userId: number): string {
    return `${this.#prefix}u:${userId}`;
  }

  #watch(): void {
    const userPrefix = `${this.#prefix}u:`;
    this.#sub.conn.on("message", (channel: string, message: string) => {
      if (!this.#channels.has(channel)) return; // unsubscribed meanwhile
      const payload = decodePayload(Number(channel.slice(userPrefix.length)), message);
      if (payload === undefined || payload.origin === this.nodeId) return;
      const now = this.#cmd.redisNow();
      if (now !== undefined && now - payload.sentAt > this.#staleMs) return; // NaN: kept
      this.#onDelivery(payload.delivery);
    });
    this.#sub.conn.on("ready", () => void this.#resubscribe());
    // After a reconnect Redis may have lost or swept this node: reconcile now, not in TTL/3.
    this.#cmd.conn.on("ready", () => void this.#presence.resync());
  }

  #healthChanged(connection: string, healthy: boolean, reason: string): void {
    if (!healthy && connection === "subscriber") {
      this.#subscribed = false;
      // A closed or silent connection (its close also lands here): whatever it had
      // subscribed no longer counts until the next connection subscribes it again.
      this.#confirmed.clear();
    }
    if (!healthy || this.#downSince !== undefined) this.#updateUp(connection, reason);
  }

  /** Logs the start and the end of each outage, once each. */
  #updateUp(connection: string, reason: string): void {
    if (this.#closed) return;
    // Back up only once both connections proved to work after the outage began: the other
    // one may be just as silent, its PING not past the deadline yet.
    const since = this.#downSince ?? -Infinity;
    const up = this.#cmd.healthy && this.#sub.healthy && this.#subscribed &&
      this.#cmd.confirmedAt >= since && this.#sub.confirmedAt >= since;
    if (!up && this.#downSince === undefined) {
      this.#downSince = performance.now();
      this.#logger.warn("redis_disconnected", { connection, error: reason });
    } else if (up && this.#downSince !== undefined) {
      const downMs = Math.round(performance.now() - this.#downSince);
      this.#downSince = undefined;
      this.#logger.info("redis_reconnected", { down_ms: downMs });
    }
  }

  async #resubscribe(): Promise<void> {
    const channels = [...this.#channels];
    try {
      for (let i = 0; i < channels.length; i += SUBSCRIBE_CHUNK) {
        const chunk = channels.slice(i, i + SUBSCRIBE_CHUNK);
        await this.#sub.run((conn) => conn.subscribe(...chunk.map(([channel]) => channel)));
        for (const [channel, call] of chunk) {
          if (this.#channels.get(channel) === call) this.#confirmed.add(channel);
        }
      }
      this.#subscribed = true;
      this.#updateUp("subscriber", "");
    } catch (err) {
      // The connection dropped again; the next "ready" retries.
      if (err instanceof RedisLinkDownError) return;
      this.#logger.warn("bus_resubscribe_failed", { error: errorMessage(err) });
      this.#sub.conn.disconnect(true);
    }
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
