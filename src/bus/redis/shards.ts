/**
 * @module bus/redis/shards
 * Where the Redis bus's commands go: one Redis (`SingleRedis`, here) or the primaries of a
 * Redis Cluster (`ClusterShards`, `cluster.ts`), behind one interface, so that
 * presence, slots, publishing and subscriptions are the same code on both.
 *
 * One Redis is a cluster of one shard that serves every slot: its command connection is the
 * shard's link (health, clock), scripts may mix slots (`batchKey` is the same for all), and
 * its topology "changes" when the connection comes back (Redis may have lost everything).
 */

import { type Cluster, Redis, type RedisOptions } from "ioredis";
import type { RedisKeys } from "./keys.ts";
import { RedisLink, RedisLinkDownError, type RedisLinkOptions } from "./link.ts";
import type { Logger } from "../../log.ts";

/** ioredis connection options as the bus passes them (its reply mapping is the default). */
export type ClientOptions = Omit<RedisOptions, "replyMapping">;

/** A primary, and how to open a connection of one's own to it (for its subscriber). */
export interface ShardAddress {
  /** `host:port`, or `redis` for one Redis. */
  key: string;
  open(options: ClientOptions): Redis;
}

/** The health check settings of every link; `name` says which connection in log lines. */
export type LinkHealth = (name: string, clock: boolean) => RedisLinkOptions;

export interface RedisShards {
  /** The client the bus's scripts are defined on; on a cluster it routes by the first key. */
  readonly commands: Redis | Cluster;
  /**
   * Runs `command` for keys of `slot`: rejects with `RedisLinkDownError` at once while the
   * primary serving it is unhealthy or unknown, and when it goes down while the reply is awaited.
   */
  run<T>(slot: number, command: () => Promise<T>): Promise<T>;
  /** Keys of slots with the same batch key may share one script call (one Redis: all do). */
  batchKey(slot: number): number;
  /** The primary serving `slot`, if known. */
  primaryOf(slot: number): ShardAddress | undefined;
  /** Every primary now. */
  primaries(): ShardAddress[];
  /** Redis's clock on the primary `key` (ms since the epoch), once learnt. */
  redisNow(key: string): number | undefined;
  /** The command-side links readiness depends on. */
  links(): RedisLink[];
  /**
   * Called when the primary serving some slots changed or reconnected (their last writes may be
   * lost): with those slots, or `undefined` for all of them.
   */
  onChange(handler: (slots: ReadonlySet<number> | undefined) => void): void;
  /** Asks for the topology now (after a MOVED or a pushed `sunsubscribe`); throttled. */
  refresh(): void;
  /** Connects; rejects with the reason when Redis cannot be reached. */
  connect(): Promise<void>;
  /** Stops the health checks and closes (QUIT where connected). */
  close(): Promise<void>;
  /** Drops every connection at once (a crash, for tests). */
  abandon(): void;
}

/** What the bus's parts are built with: where commands go, the key names, the logger. */
export interface BusParts {
  shards: RedisShards;
  keys: RedisKeys;
  logger: Logger;
}

/** One Redis: one command connection, whose health and clock are those of the only shard. */
export class SingleRedis implements RedisShards {
  readonly commands: Redis;
  readonly #link: RedisLink;
  readonly #address: ShardAddress;

  constructor(url: string, options: ClientOptions, health: LinkHealth) {
    this.commands = new Redis(url, {
      ...options,
      // The publishes of one tick (a message to its recipient and to the sender's other
      // devices, a presence fan-out) leave in one write.
      enableAutoPipelining: true,
    });
    this.#link = new RedisLink(this.commands, health("commands", true));
    this.#address = { key: "redis", open: (subOptions) => new Redis(url, subOptions) };
  }

  run<T>(_slot: number, command: () => Promise<T>): Promise<T> {
    return this.#link.run(command);
  }

  batchKey(): number {
    return 0;
  }

  primaryOf(): ShardAddress {
    return this.#address;
  }

  primaries(): ShardAddress[] {
    return [this.#address];
  }

  redisNow(): number | undefined {
    return this.#link.redisNow();
  }

  links(): RedisLink[] {
    return [this.#link];
  }

  onChange(handler: (slots: ReadonlySet<number> | undefined) => void): void {
    this.commands.on("ready", () => handler(undefined));
  }

  refresh(): void {
    // One Redis has no topology to learn.
  }

  async connect(): Promise<void> {
    await this.commands.connect();
  }

  async close(): Promise<void> {
    this.#link.stop();
    await quit(this.commands);
  }

  abandon(): void {
    this.#link.stop();
    this.commands.disconnect();
  }
}

/** QUIT when connected, else just stop reconnecting. */
export async function quit(conn: Redis | Cluster): Promise<void> {
  try {
    if (conn.status === "ready") await conn.quit();
  } catch {
    // Closing anyway.
  } finally {
    conn.disconnect();
  }
}

/** A `RedisLinkDownError` for a slot no known primary serves. */
export function noPrimary(slot: number): RedisLinkDownError {
  return new RedisLinkDownError(`no reachable primary serves slot ${slot}`);
}
