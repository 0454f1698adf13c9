/**
 * @module bus/redis/bus
 * A `Bus` over Redis, one Redis (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_NODES`), the
 * same code on both (`shards.ts`): sharded pub/sub on per-user channels between
 * nodes, plus cluster presence (`presence.ts`) and connection slots
 * (`slots.ts`). Everything about one user lives in one hash slot
 * (`keys.ts`), so each script touches one slot, and a user's frames travel only
 * through the shard that serves it.
 *
 * Delivery: `publish` sends on the user's shard channel with the origin node's id; each node
 * subscribes, on a subscriber connection per primary (`subscriptions.ts`), to the
 * channels of its local users and ignores what it published itself, since the hub has already
 * delivered locally. At most once: what is published while Redis is unreachable is dropped
 * (counted, logged).
 *
 * A frame for a user this node holds (a message's copy for the sender's other devices, a
 * recipient on this node) is published only when another subscriber listens: the publish
 * script (`publisher.ts`) asks the user's primary how many connections are
 * subscribed to the channel and publishes when there are more than this node's own. The
 * question and the publish are one step in Redis, so a node subscribed at that moment gets the
 * frame exactly as with a plain publish, and a user on this node alone costs no frame sent
 * back to it. This node's subscription counts as its own only once Redis confirmed it on the
 * current subscriber connection of the channel's primary; until then, and whenever that
 * connection is down, the frame is published as before.
 *
 * A Redis outage never throws out of the bus and never stops the process. Each connection is
 * health-checked (`link.ts`: a PING every second that must be answered within 2.5 s),
 * so one that goes silent without closing is found within about 3.5 s and replaced. Connections
 * reconnect with backoff; on a cluster the topology is asked for until a primary serves every
 * slot again (`cluster.ts`). Then every wanted channel is subscribed again and
 * presence and connection slots are reconciled for the slots whose primary changed or came
 * back, presence changes reported to `onPresenceChange`. The bus is ready (`isReady`) while
 * every connection is healthy and every wanted channel is subscribed; each outage is logged
 * once when it starts (`redis_disconnected`, warn) and once when it ends (`redis_reconnected`,
 * info).
 *
 * Publishes in flight are bounded (`publisher.ts`). What is published while Redis is
 * unreachable is dropped and counted; nothing is re-sent after a reconnect, so nothing arrives
 * twice or late.
 *
 * A publish can still reach Redis late: bytes the old socket had sent before it was reset
 * are retransmitted by TCP when the path comes back, and Redis runs them. So each payload
 * carries when it was sent, on the clock of the primary serving its channel (learnt by that
 * primary's health check's TIME, so nodes' clocks need not agree), and a receiver drops a frame
 * older, on that same primary's clock, than the health check's interval plus deadline (3.5 s):
 * longer than a connection may stay silent, so its publisher has reset that connection and
 * counted the publish failed. Payload format: `payload.ts`.
 */

import type { Bus, BusDelivery, BusInspection, PresenceStatus } from "../bus.ts";
import { type ClusterSeed, ClusterShards } from "./cluster.ts";
import { RedisKeys } from "./keys.ts";
import { decodePayload } from "./payload.ts";
import {
  MAX_PUBLISH_BYTES_IN_FLIGHT,
  MAX_PUBLISHES_IN_FLIGHT,
  RedisPublisher,
} from "./publisher.ts";
import { RedisPresence } from "./presence.ts";
import { type ClientOptions, type LinkHealth, type RedisShards, SingleRedis } from "./shards.ts";
import { RedisSlots } from "./slots.ts";
import { Subscriptions } from "./subscriptions.ts";
import type { Logger } from "../../log.ts";

export interface RedisBusOptions {
  /** One Redis: `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  url?: string | undefined;
  /** A Redis Cluster: `host:port` seeds (any of its nodes). Exactly one of the two is set. */
  clusterNodes?: readonly string[] | undefined;
  /** Unique in the cluster; a random one by default. Letters, digits and `._:-` only. */
  nodeId?: string | undefined;
  /** Prefix of every key and channel, e.g. `geobeasts:chat:` (no `{` or `}`). */
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

const HEALTH_INTERVAL_MS = 1000;
const HEALTH_DEADLINE_MS = 2500;
const CONNECT_TIMEOUT_MS = 5000;

const NODE_ID = /^[A-Za-z0-9._:-]{1,100}$/;

export class RedisBus implements Bus {
  readonly nodeId: string;
  readonly #shards: RedisShards;
  readonly #keys: RedisKeys;
  readonly #subscriptions: Subscriptions;
  readonly #presence: RedisPresence;
  readonly #slots: RedisSlots;
  readonly #logger: Logger;
  readonly #publisher: RedisPublisher;
  readonly #staleMs: number;
  #onDelivery: (delivery: BusDelivery) => void = () => {};
  /** When the current outage began (`performance.now()`), undefined while up. */
  #downSince: number | undefined;
  /** Connected: from then on readiness is watched. */
  #started = false;
  #closed = false;

  private constructor(
    makeShards: (options: ClientOptions, health: LinkHealth) => RedisShards,
    clientOptions: ClientOptions,
    nodeId: string,
    options: RedisBusOptions,
  ) {
    const intervalMs = options.healthIntervalMs ?? HEALTH_INTERVAL_MS;
    const deadlineMs = options.healthDeadlineMs ?? HEALTH_DEADLINE_MS;
    this.#staleMs = intervalMs + deadlineMs;
    const health: LinkHealth = (name, clock) => ({
      intervalMs,
      deadlineMs,
      clock,
      onHealth: (healthy: boolean, reason: string) => this.#healthChanged(name, healthy, reason),
    });
    this.nodeId = nodeId;
    this.#keys = new RedisKeys(options.keyPrefix);
    this.#logger = options.logger;
    this.#shards = makeShards({ ...clientOptions, connectionName: `chat-${nodeId}` }, health);
    this.#subscriptions = new Subscriptions({
      shards: this.#shards,
      keys: this.#keys,
      clientOptions: { ...clientOptions, connectionName: `chat-sub-${nodeId}` },
      health,
      logger: options.logger,
      onMessage: (channel, message, primary) => this.#received(channel, message, primary),
      onSubscribed: () => this.#healthChanged("subscriber", true, ""),
    });
    this.#publisher = new RedisPublisher(this.#shards, {
      nodeId,
      maxInFlight: options.maxPublishesInFlight ?? MAX_PUBLISHES_IN_FLIGHT,
      maxBytesInFlight: options.maxPublishBytesInFlight ?? MAX_PUBLISH_BYTES_IN_FLIGHT,
      logger: options.logger,
      onPublish: options.onPublish ?? (() => {}),
      isDown: () => this.#closed || this.#downSince !== undefined,
    });
    this.#presence = new RedisPresence({
      shards: this.#shards,
      keys: this.#keys,
      nodeId,
      ttlMs: options.presenceTtlS * 1000,
      logger: options.logger,
      afterBeat: (slots) => this.#slots.writeBack(slots),
    });
    this.#slots = new RedisSlots(this.#shards, this.#keys, this.#presence);
  }

  /** Connects, checks Redis can serve the bus, registers the node; rejects when it cannot. */
  static async connect(options: RedisBusOptions): Promise<RedisBus> {
    const nodeId = options.nodeId ?? crypto.randomUUID();
    if (!NODE_ID.test(nodeId)) throw new RangeError(`Cannot use node id '${nodeId}'`);
    if (!(options.presenceTtlS > 0)) throw new RangeError("presenceTtlS must be positive");
    const { url, clusterNodes } = options;
    if ((url === undefined) === (clusterNodes === undefined)) {
      throw new RangeError("Set exactly one of url (one Redis) and clusterNodes (Redis Cluster)");
    }
    const seeds = clusterNodes?.map(parseSeed);
    const clientOptions: ClientOptions = {
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
    const bus = new RedisBus(
      (shardOptions, health) =>
        seeds === undefined
          ? new SingleRedis(url!, shardOptions, health)
          : new ClusterShards(seeds, shardOptions, health),
      clientOptions,
      nodeId,
      options,
    );
    // The "error" event says why ("connect ECONNREFUSED ..."); connect() only "closed".
    let cause: unknown;
    bus.#shards.commands.on("error", (err: Error) => (cause ??= err));
    try {
      await bus.#shards.connect();
      await requireShardedPubSub(bus.#shards);
      await bus.#subscriptions.start(CONNECT_TIMEOUT_MS);
      await bus.#presence.start();
    } catch (err) {
      bus.#presence.stop();
      await bus.#subscriptions.close(true);
      bus.#shards.abandon();
      const reason = err instanceof RangeError ? err : cause ?? err;
      const where = seeds === undefined ? "Redis" : "Redis Cluster";
      throw new Error(
        `Cannot connect to ${where}: ${reason instanceof Error ? reason.message : String(reason)}`,
      );
    }
    bus.#shards.onChange((slots) => bus.#topologyChanged(slots));
    bus.#started = true;
    options.logger.info("bus_connected", {
      bus: seeds === undefined ? "redis" : "redis-cluster",
      node_id: nodeId,
    });
    return bus;
  }

  onDelivery(handler: (delivery: BusDelivery) => void): void {
    this.#onDelivery = handler;
  }

  onPresenceChange(handler: (userId: number, status: PresenceStatus) => void): void {
    this.#presence.onChange = handler;
  }

  async subscribe(userId: number): Promise<void> {
    if (this.#closed) return;
    await this.#subscriptions.subscribe(this.#keys.channel(userId), this.#keys.slotOf(userId));
  }

  async unsubscribe(userId: number): Promise<void> {
    if (this.#closed) return;
    await this.#subscriptions.unsubscribe(this.#keys.channel(userId));
  }

  publish(delivery: BusDelivery): void {
    if (this.#closed) return;
    const channel = this.#keys.channel(delivery.userId);
    const slot = this.#keys.slotOf(delivery.userId);
    this.#publisher.publish(channel, slot, delivery, this.#subscriptions.isConfirmed(channel));
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

  /** The registry's members, and how long reading them from the registry's primary took. */
  async inspect(): Promise<BusInspection> {
    const started = performance.now();
    const nodes = await this.#presence.nodes();
    return { nodes, roundTripMs: performance.now() - started };
  }

  /** Leaves every user of this node (without announcing), stops the heartbeat, disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#subscriptions.close();
    await this.#presence.retire(this.#slots.users());
    this.#slots.clear();
    await this.#shards.close();
  }

  /**
   * Stops the heartbeat and drops every connection without leaving: what a crashed process
   * looks like to the rest of the cluster. For tests and failure drills.
   */
  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#presence.stop();
    void this.#subscriptions.close(true);
    this.#shards.abandon();
  }

  #received(channel: string, message: string, primary: string): void {
    const userId = this.#keys.userOf(channel);
    if (!Number.isSafeInteger(userId)) return;
    const payload = decodePayload(userId, message);
    if (payload === undefined || payload.origin === this.nodeId) return;
    const now = this.#shards.redisNow(primary);
    if (now !== undefined && now - payload.sentAt > this.#staleMs) return; // NaN: kept
    this.#onDelivery(payload.delivery);
  }

  /** A primary changed or came back: subscriptions move, presence and slots are reconciled. */
  #topologyChanged(slots: ReadonlySet<number> | undefined): void {
    if (this.#closed) return;
    if (slots !== undefined) {
      this.#logger.info("bus_topology_changed", { slots: slots.size });
    }
    this.#subscriptions.place();
    void this.#presence.resync(slots);
    this.#updateUp("topology", "");
  }

  #healthChanged(connection: string, healthy: boolean, reason: string): void {
    if (!healthy || this.#downSince !== undefined) this.#updateUp(connection, reason);
  }

  /** Logs the start and the end of each outage, once each. */
  #updateUp(connection: string, reason: string): void {
    if (this.#closed || !this.#started) return;
    // Back up only once every connection proved to work after the outage began: another may
    // be just as silent, its PING not past the deadline yet.
    const since = this.#downSince ?? -Infinity;
    const links = [...this.#shards.links(), ...this.#subscriptions.links()];
    const up = links.length > 0 && this.#subscriptions.allSubscribed() &&
      links.every((link) => link.healthy && link.confirmedAt >= since);
    if (!up && this.#downSince === undefined) {
      this.#downSince = performance.now();
      this.#logger.warn("redis_disconnected", { connection, error: reason });
    } else if (up && this.#downSince !== undefined) {
      const downMs = Math.round(performance.now() - this.#downSince);
      this.#downSince = undefined;
      this.#logger.info("redis_reconnected", { down_ms: downMs });
    }
  }
}

/** `host:port` → a seed; a `RangeError` naming the bad one otherwise. */
function parseSeed(seed: string): ClusterSeed {
  const match = /^\s*([^\s:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})\s*$/.exec(seed);
  const port = Number(match?.[2]);
  if (match === null || !(port >= 1 && port <= 65535)) {
    throw new RangeError(`Cannot use Redis Cluster node '${seed}': expected host:port`);
  }
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

/** Sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`) came with Redis 7. */
async function requireShardedPubSub(shards: RedisShards): Promise<void> {
  const info = await shards.commands.info("server");
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
  if (!(Number(version.split(".")[0]) >= 7)) {
    throw new RangeError(`Redis ${version} has no sharded pub/sub: the bus needs Redis 7 or later`);
  }
}
