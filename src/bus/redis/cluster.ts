/**
 * @module bus/redis/cluster
 * The Redis bus's shards on a Redis Cluster (`REDIS_CLUSTER_NODES`): commands through ioredis'
 * `Cluster` (routed by key slot, following MOVED/ASK), and per primary a probe connection of our
 * own with the health check of `link.ts`, for two reasons:
 * - the client's own view of a primary is a pool connection that it never pings: a frozen
 *   primary (SIGSTOP, a partition) would hold every command for its slots until the command
 *   timeout, and nothing would ask for the new topology once a replica takes over. The probe
 *   finds it within interval + deadline; from then on commands for its slots fail at once, and
 *   the topology is asked for every second until a primary serves them again;
 * - `TIME` must be asked of the primary a channel lives on: the payload stamp
 *   (`payload.ts`) compares times of one host, never of two.
 *
 * The topology is also asked for every 5 s (a `CLUSTER FAILOVER` or a slot migration hurts no
 * connection), after a MOVED (ioredis), and when a subscriber is told its slot moved
 * (`subscriptions.ts`). Every change of the primary serving a slot is reported
 * (`onChange`), and so is a probe reconnecting (a primary restarted without failing over lost
 * its data): the bus reconciles presence and subscriptions for those slots.
 *
 * Nothing is re-sent after a lost connection (`retryDelayOnFailover: 0`): ioredis would
 * re-send a command whose connection closed, and a publish Redis ran would be delivered
 * twice. A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply means the command did not run, so those
 * are retried.
 */

import { Cluster, Redis } from "ioredis";
import { HASH_SLOTS } from "./keys.ts";
import { VARIABLE_KEY_SCRIPTS } from "./scripts.ts";
import { RedisLink, RedisLinkDownError } from "./link.ts";
import {
  type ClientOptions,
  type LinkHealth,
  noPrimary,
  quit,
  type RedisShards,
  type ShardAddress,
} from "./shards.ts";

/** How often the topology is asked for while some slot has no healthy primary. */
const REFRESH_UNHEALTHY_MS = 1000;
/** How often it is asked for anyway. */
const REFRESH_EVERY_MS = 5000;
/** At most one topology request per this long. */
const REFRESH_MIN_GAP_MS = 500;

interface Probe {
  address: ShardAddress;
  conn: Redis;
  link: RedisLink;
  readyOnce: boolean;
}

/** `host:port` seeds, as `REDIS_CLUSTER_NODES` lists them. */
export interface ClusterSeed {
  host: string;
  port: number;
}

export class ClusterShards implements RedisShards {
  readonly commands: Cluster;
  readonly #options: ClientOptions;
  readonly #health: LinkHealth;
  readonly #probes = new Map<string, Probe>();
  /** Slot → the `host:port` of its primary, as last adopted from the client. */
  readonly #owners: (string | undefined)[] = new Array(HASH_SLOTS);
  #onChange: (slots: ReadonlySet<number> | undefined) => void = () => {};
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastRefresh = -Infinity;
  #lastTick = 0;
  #pendingRefresh: ReturnType<typeof setTimeout> | undefined;
  #started = false;
  #stopped = false;

  constructor(seeds: readonly ClusterSeed[], options: ClientOptions, health: LinkHealth) {
    this.#options = options;
    this.#health = health;
    this.commands = new Cluster(seeds.map((s) => ({ host: s.host, port: s.port })), {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      // ioredis groups an automatic pipeline by a command's first argument, and these scripts
      // take their key count first: sent on their own, each goes to its keys' primary.
      autoPipeliningIgnoredCommands: [...VARIABLE_KEY_SCRIPTS],
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      maxRedirections: 16,
      slotsRefreshTimeout: 1000,
      clusterRetryStrategy: options.retryStrategy ?? (() => 1000),
      redisOptions: {
        ...(options.connectionName === undefined ? {} : { connectionName: options.connectionName }),
        ...(options.commandTimeout === undefined ? {} : { commandTimeout: options.commandTimeout }),
        autoResendUnfulfilledCommands: false,
      },
    });
    this.commands.on("error", () => {}); // every failure reaches its caller, and the probes
    this.commands.on("node error", () => {});
    this.commands.on("refresh", () => this.#adopt());
  }

  run<T>(slot: number, command: () => Promise<T>): Promise<T> {
    const key = this.#owners[slot];
    const probe = key === undefined ? undefined : this.#probes.get(key);
    if (probe === undefined || this.commands.status !== "ready") {
      return Promise.reject(noPrimary(slot));
    }
    return probe.link.run(command);
  }

  batchKey(slot: number): number {
    return slot;
  }

  primaryOf(slot: number): ShardAddress | undefined {
    const key = this.#owners[slot];
    return key === undefined ? undefined : this.#probes.get(key)?.address;
  }

  primaries(): ShardAddress[] {
    return [...this.#probes.values()].map((probe) => probe.address);
  }

  redisNow(key: string): number | undefined {
    return this.#probes.get(key)?.link.redisNow();
  }

  links(): RedisLink[] {
    return [...this.#probes.values()].map((probe) => probe.link);
  }

  onChange(handler: (slots: ReadonlySet<number> | undefined) => void): void {
    this.#onChange = handler;
  }

  refresh(): void {
    if (this.#stopped || this.#pendingRefresh !== undefined) return;
    const wait = this.#lastRefresh + REFRESH_MIN_GAP_MS - performance.now();
    if (wait > 0) {
      this.#pendingRefresh = setTimeout(() => {
        this.#pendingRefresh = undefined;
        this.refresh();
      }, wait);
      return;
    }
    this.#lastRefresh = performance.now();
    this.commands.refreshSlotsCache(() => {});
  }

  async connect(): Promise<void> {
    await this.commands.connect();
    this.#adopt();
    const deadline = performance.now() + (this.#options.commandTimeout ?? 5000);
    for (const probe of this.#probes.values()) {
      while (!probe.link.healthy) {
        if (performance.now() > deadline) {
          throw new RedisLinkDownError(`primary ${probe.address.key} did not answer`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    this.#started = true;
    this.#timer = setInterval(() => this.#tick(), REFRESH_UNHEALTHY_MS);
  }

  async close(): Promise<void> {
    const probes = this.#stop();
    await Promise.all([quit(this.commands), ...probes.map((probe) => quit(probe.conn))]);
  }

  abandon(): void {
    for (const probe of this.#stop()) probe.conn.disconnect();
    this.commands.disconnect();
  }

  #stop(): Probe[] {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#pendingRefresh);
    const probes = [...this.#probes.values()];
    for (const probe of probes) probe.link.stop();
    this.#probes.clear();
    return probes;
  }

  #tick(): void {
    const now = performance.now();
    const unhealthy = this.#owners.some((key) => key === undefined) ||
      [...this.#probes.values()].some((probe) => !probe.link.healthy);
    if (unhealthy || now - this.#lastTick >= REFRESH_EVERY_MS) {
      if (!unhealthy) this.#lastTick = now;
      this.refresh();
    }
  }

  /** Takes the client's slot map as ours: reports changed slots, keeps a probe per primary. */
  #adopt(): void {
    if (this.#stopped) return;
    const slots = this.commands.slots;
    const changed = new Set<number>();
    for (let slot = 0; slot < HASH_SLOTS; slot++) {
      const key = slots[slot]?.[0];
      if (key !== this.#owners[slot]) {
        changed.add(slot);
        this.#owners[slot] = key;
      }
    }
    const primaries = new Set(this.#owners.filter((key) => key !== undefined));
    for (const [key, probe] of this.#probes) {
      if (primaries.has(key)) continue;
      this.#probes.delete(key);
      probe.link.stop();
      probe.conn.disconnect();
    }
    for (const key of primaries) if (!this.#probes.has(key)) this.#probe(key);
    if (changed.size > 0 && this.#started) this.#onChange(changed);
  }

  #probe(key: string): void {
    const colon = key.lastIndexOf(":");
    const host = key.slice(0, colon);
    const port = Number(key.slice(colon + 1));
    const address: ShardAddress = {
      key,
      open: (options) => new Redis({ ...options, host, port }),
    };
    const conn = address.open({ ...this.#options, connectionName: probeName(this.#options) });
    const health = this.#health(`commands ${key}`, true);
    const link = new RedisLink(conn, {
      ...health,
      onHealth: (healthy, reason) => {
        health.onHealth(healthy, reason);
        if (!healthy) this.refresh();
      },
    });
    const probe: Probe = { address, conn, link, readyOnce: false };
    conn.on("ready", () => {
      if (probe.readyOnce && this.#probes.get(key) === probe) this.#onChange(this.#slotsOf(key));
      probe.readyOnce = true;
    });
    conn.on("error", () => {});
    this.#probes.set(key, probe);
    conn.connect().catch(() => {}); // the link's health says how it went
  }

  #slotsOf(key: string): Set<number> {
    const slots = new Set<number>();
    for (let slot = 0; slot < HASH_SLOTS; slot++) if (this.#owners[slot] === key) slots.add(slot);
    return slots;
  }
}

function probeName(options: ClientOptions): string | undefined {
  return options.connectionName?.replace(/^chat-/, "chat-probe-");
}
