/**
 * @module bus/redis/presence
 * One node's side of cluster presence in Redis: join/leave/online, the heartbeat that keeps
 * the node live, the sweep of dead nodes (`sweep.ts`), and reconciling after failures
 * (scripts and keys in `scripts.ts` and `keys.ts`).
 *
 * The node is registered as a member `<node id>#<tag>`. Every `TTL / 3` the heartbeat extends
 * the member's deadline to `TTL` ahead and learns the dead members; then this node sweeps them.
 * So a node that dies stops counting for `online()` at most `TTL + TTL / 3` after its last
 * heartbeat, and its users are reported offline (to the sweeping node's handler) by then. A
 * heartbeat that finds its own deadline past (the node was late; others may be sweeping it)
 * registers a new member and writes every user back under it.
 *
 * A join lists the user under the member in the registry first, then adds the member to the
 * user's set; a leave does the reverse. So the registry never misses a user a member holds
 * (it may list one too many, which the sweep skips), and the sweep of a dead member finds them
 * all. The list of dead members the user scripts are given is the last heartbeat's.
 *
 * Redis failures never throw out of here: a failed `join`/`leave` answers "no change" and
 * marks the user's slot for reconciling, which the next heartbeat does, reporting what
 * changed. So does a topology change (`resync` with the slots whose primary changed: a failover
 * can lose a shard's last writes).
 */

import type { PresenceStatus } from "../bus.ts";
import { perUserCalls, userKeys } from "./batches.ts";
import type { RedisKeys } from "./keys.ts";
import { RedisLinkDownError } from "./link.ts";
import { type BusScripts, deadArgs, PRESENCE_SCRIPTS } from "./scripts.ts";
import type { BusParts, RedisShards } from "./shards.ts";
import { sweepDead } from "./sweep.ts";
import { errorMessage, type Logger } from "../../log.ts";

export interface RedisPresenceOptions extends BusParts {
  nodeId: string;
  ttlMs: number;
  /**
   * Runs after every heartbeat that reached Redis, with the slots reconciled (`undefined`:
   * all): the node's other state there, its connection slots, must then be written back too.
   */
  afterBeat?: ((slots: ReadonlySet<number> | undefined) => Promise<void>) | undefined;
}

/** Dead members a heartbeat learns at most. */
const MAX_DEAD = 100;
/** User ids per registry write. */
const IDS_PER_CALL = 1000;
/**
 * "online" reports of a reconcile are handed out this many at a time, `REPORT_PAUSE_MS`
 * apart. After Redis lost its data every node re-registers all its users at once, and each
 * report costs the hub a friends query and a fan-out: paced, 10,000 users take 5 s instead of
 * 10,000 queries in one burst. (Their friends were never told they went offline, so the
 * reports only correct what someone may have read in between.)
 */
const REPORT_BATCH = 500;
const REPORT_PAUSE_MS = 250;

type Flag = "1" | "0" | "2";

export class RedisPresence {
  readonly #shards: RedisShards;
  readonly #keys: RedisKeys;
  readonly #scripts: BusScripts;
  readonly #afterBeat: (slots: ReadonlySet<number> | undefined) => Promise<void>;
  readonly #nodeId: string;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  #member = "";
  /**
   * Earlier members of this node (the last 16): dead for good, so they count among the dead
   * members every user script drops, whether or not the registry still lists them.
   */
  #old: string[] = [];
  /** The dead members the last heartbeat saw, and this node's earlier members. */
  #dead: string[] = [];
  /** Users present on this node: the truth Redis is reconciled to. */
  readonly #joined = new Set<number>();
  /** Users whose `leave` failed: reported offline by the next reconcile if on no live node. */
  readonly #left = new Set<number>();
  /** Slots whose users must be reconciled; all of them when `#dirtyAll`. */
  readonly #dirty = new Set<number>();
  #dirtyAll = false;
  #registryDirty = false;
  #mustRegister = false;
  #stopped = false;
  #ticking: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Receives the changes found by sweeps and reconciles. */
  onChange: (userId: number, status: PresenceStatus) => void = () => {};

  constructor(options: RedisPresenceOptions) {
    for (const [name, definition] of Object.entries(PRESENCE_SCRIPTS)) {
      options.shards.commands.defineCommand(name, definition);
    }
    this.#shards = options.shards;
    this.#keys = options.keys;
    this.#scripts = options.shards.commands as unknown as BusScripts;
    this.#afterBeat = options.afterBeat ?? (() => Promise.resolve());
    this.#nodeId = options.nodeId;
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger;
  }

  /** This node's registration now. */
  get member(): string {
    return this.#member;
  }

  /** Earlier registrations of this node whose traces may remain. */
  get oldMembers(): readonly string[] {
    return this.#old;
  }

  /** The dead members the last heartbeat saw, and this node's earlier members. */
  get dead(): readonly string[] {
    return this.#dead;
  }

  /** Registers the node as live (throws when Redis does not answer), then keeps it live. */
  async start(): Promise<void> {
    await this.#register();
    this.#timer = setInterval(() => void this.#tick(), Math.max(1, this.#ttlMs / 3));
  }

  /** Reconciles the users of `slots` (all when undefined) now, with a heartbeat. */
  resync(slots?: ReadonlySet<number>): Promise<void> {
    if (slots === undefined) this.#dirtyAll = true;
    else for (const slot of slots) this.#dirty.add(slot);
    return this.#tick();
  }

  async join(userId: number): Promise<boolean> {
    this.#joined.add(userId);
    this.#left.delete(userId);
    const member = this.#member;
    try {
      const held = await this.#registry(() =>
        this.#scripts.gbHold(this.#keys.nodes, this.#keys.users(member), member, [userId])
      );
      if (held !== 1) {
        // The member is dead (this node was late): the new one will hold the user.
        this.#mustRegister = true;
        void this.#tick();
        return false;
      }
      return (await this.#user(
        userId,
        (at, conn) => this.#scripts.gbJoin(at, conn, member, deadArgs(this.#dead)),
      )) === 1;
    } catch (err) {
      this.#failed("join", userId, err);
      return false;
    }
  }

  async leave(userId: number): Promise<boolean> {
    this.#joined.delete(userId);
    const member = this.#member;
    try {
      const last = await this.#user(
        userId,
        (at, conn) => this.#scripts.gbLeave(at, conn, member, deadArgs(this.#dead)),
      );
      // A failed unlisting only leaves the registry listing one user too many.
      this.#registry(() => this.#shards.commands.srem(this.#keys.users(member), userId))
        .catch(() => {});
      return last === 1;
    } catch (err) {
      this.#left.add(userId);
      this.#failed("leave", userId, err);
      return false;
    }
  }

  /** Asks each user's primary; a user whose primary does not answer is answered locally. */
  async online(userIds: readonly number[]): Promise<Set<number>> {
    const dead = new Set(this.#dead);
    let failure: unknown;
    const answers = await Promise.all(userIds.map(async (id) => {
      try {
        const members = await this.#user(id, (at) => this.#shards.commands.smembers(at));
        return members.some((member) => !dead.has(member));
      } catch (err) {
        failure ??= err;
        return this.#joined.has(id);
      }
    }));
    if (failure !== undefined) this.#warn("bus_online_failed", failure);
    return new Set(userIds.filter((_, i) => answers[i]));
  }

  /** Stops the heartbeat; Redis keeps the node until it is swept (a crash looks like this). */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  /**
   * Stops, then removes the node and its users from Redis without reporting anyone; `others`
   * (users holding connection slots here) lose the node's slots too.
   */
  async retire(others: Iterable<number> = []): Promise<void> {
    this.stop();
    await this.#ticking;
    const member = this.#member;
    const users = new Set([...this.#joined, ...others]);
    this.#joined.clear();
    this.#left.clear();
    try {
      const listed = await this.#registry(() =>
        this.#shards.commands.smembers(this.#keys.users(member))
      );
      for (const id of listed) users.add(Number(id));
      const errors = await perUserCalls(this.#shards, this.#keys, users, async ({ items }) => {
        await this.#scripts.gbForget(2 * items.length, ...userKeys(this.#keys, items), member);
      });
      if (errors[0] !== undefined) throw errors[0];
      await this.#registry(() =>
        this.#scripts.gbRetire(
          this.#keys.nodes,
          this.#keys.users(member),
          this.#keys.claimed(member),
          member,
        )
      );
    } catch (err) {
      this.#logger.warn("bus_retire_failed", { node_id: this.#nodeId, error: errorMessage(err) });
    }
  }

  #tick(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#ticking ??= this.#beat().finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  async #beat(): Promise<void> {
    try {
      if (this.#mustRegister) await this.#register();
      const [alive, dead] = await this.#registry(() =>
        this.#scripts.gbBeat(this.#keys.nodes, this.#member, this.#ttlMs, MAX_DEAD)
      );
      if (alive !== 1) await this.#register();
      const old = this.#old.filter((member) => !dead.includes(member));
      this.#dead = [...dead.filter((member) => member !== this.#member), ...old];
      await this.#afterBeat(await this.#reconcile());
      await sweepDead({
        shards: this.#shards,
        keys: this.#keys,
        scripts: this.#scripts,
        logger: this.#logger,
        dead: this.#dead,
        stopped: () => this.#stopped,
        offline: (id) => this.onChange(id, "offline"),
      });
    } catch (err) {
      if (!this.#stopped) this.#warn("bus_heartbeat_failed", err);
    }
  }

  /** A new member for this node: every user is written back under it. */
  async #register(): Promise<void> {
    const member = `${this.#nodeId}#${crypto.randomUUID().slice(0, 8)}`;
    await this.#registry(() => this.#scripts.gbRegister(this.#keys.nodes, member, this.#ttlMs));
    const again = this.#member !== "";
    if (again) this.#old = [...this.#old, this.#member].slice(-16);
    this.#dead = [...this.#dead, ...this.#old.slice(-1)];
    this.#member = member;
    this.#mustRegister = false;
    if (!again) return;
    this.#logger.info("bus_registered_again", { node_id: this.#nodeId });
    this.#dirtyAll = true;
    this.#registryDirty = true;
  }

  /**
   * Makes Redis agree with this node for the dirty slots (and the registry's list of its
   * users when that is dirty); reports what changed. Slots whose calls failed stay dirty.
   */
  async #reconcile(): Promise<ReadonlySet<number> | undefined> {
    const all = this.#dirtyAll;
    const slots = all ? undefined : new Set(this.#dirty);
    if (!all && this.#dirty.size === 0 && !this.#registryDirty) return slots;
    this.#dirtyAll = false;
    this.#dirty.clear();
    let stale: number[] = [];
    if (this.#registryDirty) {
      this.#registryDirty = false;
      try {
        stale = await this.#rewriteRegistry();
      } catch (err) {
        this.#registryDirty = true;
        if (all) this.#dirtyAll = true;
        else for (const slot of slots!) this.#dirty.add(slot);
        throw err;
      }
    }
    const flags = new Map<number, Flag>();
    for (const id of stale) flags.set(id, "2");
    for (const id of this.#left) flags.set(id, "0");
    for (const id of this.#joined) flags.set(id, "1");
    const inScope = (id: number) => slots === undefined || slots.has(this.#keys.slotOf(id));
    const users = [...flags.keys()].filter(inScope);
    const online: number[] = [];
    const offline: number[] = [];
    const member = this.#member;
    const old = this.#old;
    await perUserCalls(this.#shards, this.#keys, users, async ({ items }) => {
      try {
        const [on, off] = await this.#scripts.gbReconcile(
          2 * items.length,
          ...userKeys(this.#keys, items),
          member,
          deadArgs(this.#dead),
          old.length,
          old,
          items.map((id) => flags.get(id)!),
        );
        for (const u of on) online.push(items[u - 1]!);
        for (const u of off) offline.push(items[u - 1]!);
        for (const id of items) if (flags.get(id) === "0") this.#left.delete(id);
      } catch (err) {
        for (const id of items) this.#dirty.add(this.#keys.slotOf(id));
        throw err;
      }
    });
    if (online.length + offline.length > 0) {
      this.#logger.info("bus_reconciled", { online: online.length, offline: offline.length });
    }
    for (const id of offline) this.onChange(id, "offline");
    this.#reportPaced(online);
    return slots;
  }

  /** Lists exactly this node's users under its member; returns those listed but not held. */
  async #rewriteRegistry(): Promise<number[]> {
    const member = this.#member;
    const users = this.#keys.users(member);
    const listed = await this.#registry(() => this.#shards.commands.smembers(users));
    const stale = listed.map(Number).filter((id) => !this.#joined.has(id));
    for (let i = 0; i < stale.length; i += IDS_PER_CALL) {
      const chunk = stale.slice(i, i + IDS_PER_CALL).filter((id) => !this.#joined.has(id));
      if (chunk.length > 0) await this.#registry(() => this.#shards.commands.srem(users, ...chunk));
    }
    const joined = [...this.#joined];
    for (let i = 0; i < joined.length; i += IDS_PER_CALL) {
      const chunk = joined.slice(i, i + IDS_PER_CALL);
      const held = await this.#registry(() =>
        this.#scripts.gbHold(this.#keys.nodes, users, member, chunk)
      );
      if (held !== 1) {
        this.#mustRegister = true;
        throw new RedisLinkDownError("this node's registration lapsed");
      }
    }
    return stale;
  }

  /**
   * The members the registry lists, with when each last sent a heartbeat (ms since the epoch,
   * on the registry primary's clock): a dead member not swept yet shows an old one.
   */
  async nodes(): Promise<{ nodeId: string; lastHeartbeatAt: number; self: boolean }[]> {
    const flat = await this.#registry(() =>
      this.#shards.commands.zrange(this.#keys.nodes, "0", "-1", "WITHSCORES")
    );
    const nodes = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const member = flat[i]!;
      nodes.push({
        nodeId: member,
        lastHeartbeatAt: Number(flat[i + 1]) - this.#ttlMs,
        self: member === this.#member,
      });
    }
    return nodes;
  }

  #registry<T>(command: () => Promise<T>): Promise<T> {
    return this.#shards.run(this.#keys.registrySlot, command);
  }

  #user<T>(userId: number, command: (at: string, conn: string) => Promise<T>): Promise<T> {
    return this.#shards.run(
      this.#keys.slotOf(userId),
      () => command(this.#keys.at(userId), this.#keys.conn(userId)),
    );
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
    this.#dirty.add(this.#keys.slotOf(userId));
    this.#registryDirty = true;
    if (!this.#stopped) this.#warn("bus_presence_failed", err, { op, user_id: userId });
  }

  /** Logs a failure, except those of an outage: the bus logs each outage once. */
  #warn(event: string, err: unknown, fields: Record<string, unknown> = {}): void {
    if (err instanceof RedisLinkDownError) return;
    this.#logger.warn(event, { ...fields, error: errorMessage(err) });
  }
}
