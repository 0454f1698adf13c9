/**
 * @module bus/redis/presence
 * One node's side of cluster presence in Redis: join/leave/online, the heartbeat that keeps
 * the node live, the sweep of dead nodes, and reconciling after failures (scripts and keys
 * in `scripts.ts`).
 *
 * Every `TTL / 3` the node extends its deadline to `TTL` ahead, then sweeps. So a node that
 * dies stops counting for `online()` at most `TTL` after its last heartbeat, and its users
 * are reported offline (to the sweeping node's handler) at most `TTL + TTL / 3` after it.
 *
 * Redis failures never throw out of here: a failed `join`/`leave` answers "no change" and
 * marks the node for reconciling, which the next heartbeat does, reporting what changed.
 */

import type { PresenceStatus } from "../bus.ts";
import { type RedisLink, RedisLinkDownError } from "./link.ts";
import { PRESENCE_SCRIPTS, type PresenceCommands } from "./scripts.ts";
import { errorMessage, type Logger } from "../../log.ts";

export interface RedisPresenceOptions {
  prefix: string;
  nodeId: string;
  ttlMs: number;
  logger: Logger;
  /**
   * Runs after every heartbeat that reached Redis; `reconciled` after a full reconcile (the
   * node's other state in Redis, its connection slots, must then be written back too).
   */
  afterBeat?: ((reconciled: boolean) => Promise<void>) | undefined;
}

/** Users of one dead node taken per sweep call, to keep each script call short. */
const SWEEP_BATCH = 1000;
/** Sweep calls per heartbeat at most; more waits for the next heartbeat. */
const SWEEP_CALLS = 100;
/**
 * "online" reports of a reconcile are handed out this many at a time, `REPORT_PAUSE_MS`
 * apart. After Redis lost its data every node re-registers all its users at once, and each
 * report costs the hub a friends query and a fan-out: paced, 10,000 users take 5 s instead of
 * 10,000 queries in one burst. (Their friends were never told they went offline, so the
 * reports only correct what someone may have read in between.)
 */
const REPORT_BATCH = 500;
const REPORT_PAUSE_MS = 250;

export class RedisPresence {
  readonly #link: RedisLink;
  readonly #scripts: PresenceCommands;
  readonly #afterBeat: (reconciled: boolean) => Promise<void>;
  readonly #nodes: string;
  readonly #prefix: string;
  readonly #nodeId: string;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  /** Users present on this node: the truth Redis is reconciled to. */
  readonly #joined = new Set<number>();
  /** Users whose `leave` failed: reported offline by the next reconcile if on no live node. */
  readonly #left = new Set<number>();
  #dirty = false;
  #stopped = false;
  #ticking: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Receives the changes found by sweeps and reconciles. */
  onChange: (userId: number, status: PresenceStatus) => void = () => {};

  constructor(link: RedisLink, options: RedisPresenceOptions) {
    for (const [name, definition] of Object.entries(PRESENCE_SCRIPTS)) {
      link.conn.defineCommand(name, definition);
    }
    this.#link = link;
    this.#scripts = link.conn as unknown as PresenceCommands;
    this.#afterBeat = options.afterBeat ?? (() => Promise.resolve());
    this.#prefix = options.prefix;
    this.#nodes = `${options.prefix}nodes`;
    this.#nodeId = options.nodeId;
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger;
  }

  /** The live nodes with when each last sent a heartbeat (ms since the epoch, Redis's clock). */
  async nodes(): Promise<{ nodeId: string; lastHeartbeatAt: number }[]> {
    const flat = await this.#link.run((conn) => conn.zrange(this.#nodes, "0", "-1", "WITHSCORES"));
    const nodes = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      nodes.push({ nodeId: flat[i]!, lastHeartbeatAt: Number(flat[i + 1]) - this.#ttlMs });
    }
    return nodes;
  }

  /** Registers the node as live (throws when Redis does not answer), then keeps it live. */
  async start(): Promise<void> {
    await this.#link.run(() =>
      this.#scripts.gbReconcile(this.#nodes, this.#prefix, this.#nodeId, this.#ttlMs, 0, [])
    );
    this.#timer = setInterval(() => void this.resync(false), Math.max(1, this.#ttlMs / 3));
  }

  /** Runs a heartbeat now; with `reconcile`, a full reconcile (e.g. after a reconnect). */
  resync(reconcile = true): Promise<void> {
    if (reconcile) this.#dirty = true;
    if (this.#stopped) return Promise.resolve();
    this.#ticking ??= this.#beat().finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  async join(userId: number): Promise<boolean> {
    this.#joined.add(userId);
    this.#left.delete(userId);
    try {
      return (await this.#link.run(() =>
        this.#scripts.gbJoin(this.#nodes, this.#prefix, this.#nodeId, userId)
      )) === 1;
    } catch (err) {
      this.#failed("join", userId, err);
      return false;
    }
  }

  async leave(userId: number): Promise<boolean> {
    this.#joined.delete(userId);
    try {
      return (await this.#link.run(() =>
        this.#scripts.gbLeave(this.#nodes, this.#prefix, this.#nodeId, userId)
      )) === 1;
    } catch (err) {
      this.#left.add(userId);
      this.#failed("leave", userId, err);
      return false;
    }
  }

  /** During a Redis outage, answers from this node's own users rather than failing. */
  async online(userIds: readonly number[]): Promise<Set<number>> {
    if (userIds.length === 0) return new Set();
    try {
      const online = await this.#link.run(() =>
        this.#scripts.gbOnline(this.#nodes, this.#prefix, userIds)
      );
      return new Set(online.map(Number));
    } catch (err) {
      this.#warn("bus_online_failed", err);
      return new Set(userIds.filter((id) => this.#joined.has(id)));
    }
  }

  /** Stops the heartbeat; Redis keeps the node until it is swept (a crash looks like this). */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  /** Stops, then removes the node and its users from Redis without reporting anyone. */
  async retire(): Promise<void> {
    this.stop();
    await this.#ticking;
    this.#joined.clear();
    this.#left.clear();
    try {
      await this.#link.run(() => this.#scripts.gbRetire(this.#nodes, this.#prefix, this.#nodeId));
    } catch (err) {
      this.#logger.warn("bus_retire_failed", { node_id: this.#nodeId, error: errorMessage(err) });
    }
  }

  async #beat(): Promise<void> {
    try {
      const live = !this.#dirty &&
        (await this.#link.run(() =>
            this.#scripts.gbHeartbeat(this.#nodes, this.#prefix, this.#nodeId, this.#ttlMs)
          )) === 1;
      if (!live) await this.#reconcile();
      await this.#afterBeat(!live);
      for (let calls = 0; calls < SWEEP_CALLS && !this.#stopped; calls++) {
        const swept = await this.#link.run(() =>
          this.#scripts.gbSweep(this.#nodes, this.#prefix, SWEEP_BATCH)
        );
        if (swept.length === 0) break;
        const [node, offline] = swept;
        this.#logger.info("bus_node_swept", { node_id: node, offline_users: offline.length });
        for (const id of offline) this.onChange(Number(id), "offline");
      }
    } catch (err) {
      if (!this.#stopped) this.#warn("bus_heartbeat_failed", err);
    }
  }

  async #reconcile(): Promise<void> {
    this.#dirty = false;
    const left = [...this.#left];
    try {
      const present = [...this.#joined];
      const [online, offline] = await this.#link.run(() =>
        this.#scripts.gbReconcile(
          this.#nodes,
          this.#prefix,
          this.#nodeId,
          this.#ttlMs,
          present.length,
          [...present, ...left],
        )
      );
      for (const id of left) this.#left.delete(id);
      if (online.length + offline.length > 0) {
        this.#logger.info("bus_reconciled", { online: online.length, offline: offline.length });
      }
      for (const id of offline) this.onChange(Number(id), "offline");
      this.#reportPaced(online.map(Number));
    } catch (err) {
      this.#dirty = true;
      throw err;
    }
  }

  /** Reports `ids` online, `REPORT_BATCH` at a time; the hub re-checks each when it applies. */
  #reportPaced(ids: number[]): void {
    const batch = ids.splice(0, REPORT_BATCH);
    for (const id of batch) this.onChange(id, "online");
    if (ids.length > 0 && !this.#stopped) {
      setTimeout(() => this.#reportPaced(ids), REPORT_PAUSE_MS);
    }
  }

  #failed(op: string, userId: number, err: unknown): void {
    this.#dirty = true;
    if (!this.#stopped) this.#warn("bus_presence_failed", err, { op, user_id: userId });
  }

  /** Logs a failure, except those of an outage: the bus logs each outage once. */
  #warn(event: string, err: unknown, fields: Record<string, unknown> = {}): void {
    if (err instanceof RedisLinkDownError) return;
    this.#logger.warn(event, { ...fields, error: errorMessage(err) });
  }
}
