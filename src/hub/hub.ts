/**
 * @module hub/hub
 * This node's authenticated connections by user, routing of frames to users
 * (locally and through the bus to other nodes), presence with its grace
 * period, and the cluster-wide connection slots.
 *
 * Presence changes of one user are applied one at a time, each from the
 * current state (local connections vs. subscribed and joined), so a quick
 * disconnect and reconnect can never leave the user wrongly offline.
 *
 * When a user's last local connection closes, the node stops receiving their
 * frames at once but stays joined for `presenceGraceMs`: a reconnect within
 * it, on any node, sends no presence frame; friends see `offline` only when
 * the grace ends with the user on no node.
 *
 * Appear offline (v1.2): a user who appears offline is announced neither
 * online nor offline (friends see them as if they had no connection), and
 * this node keeps whether each of its users appears offline (read when it
 * starts receiving their frames, then kept by their `settings_updated`
 * deliveries) so typing can be withheld without a query. An offline decided
 * for a visible user carries, and records, when their last connection closed.
 */

import type { Bus, BusDelivery } from "../bus/mod.ts";
import type { Logger } from "../log.ts";
import { errorMessage } from "../log.ts";
import { serverFrames } from "../protocol/mod.ts";
import type { ChatRepository } from "../store/mod.ts";

/** What the hub needs of a connection. */
export interface Peer {
  readonly userId: number;
  /** Sends a serialized frame; a droppable one may be shed for a slow consumer. */
  deliver(frame: string, droppable: boolean): void;
  /** Sends `frame` (never shed), then closes the connection with 1008. */
  end(frame: string): void;
}

export interface HubOptions {
  bus: Bus;
  repository: ChatRepository;
  logger: Logger;
  maxConnectionsPerUser: number;
  /** How long a user with no connection left still counts as online; 0 ends it at once. */
  presenceGraceMs: number;
  /** Called when a user's last connection on this node has closed (typing expiry). */
  onUserGone?: (userId: number) => void;
  /** Milliseconds since the epoch (last seen times). */
  now?: () => number;
}

/** What a committed settings change tells the hub (`settingsChanged`). */
export interface VisibilityChange {
  appearOffline: boolean;
  /** The value changed: friends are told `offline` (with `lastSeenAt`) or `online`. */
  changed: boolean;
  lastSeenAt: Date | undefined;
}

/** Users whose grace periods a shutdown ends together (see `endGraces`). */
const ENDING_BATCH = 1000;

export class Hub {
  /**
   * Each user's connections on this node: the one connection itself, a set only
   * when they have more (most users have one, and a set costs memory per user).
   */
  readonly #peers = new Map<number, Peer | Set<Peer>>();
  /** Users whose deliveries this node receives from the bus. */
  readonly #subscribed = new Set<number>();
  /** Users this node holds present in the bus (connected, or in their grace). */
  readonly #joined = new Set<number>();
  readonly #graces = new Map<number, ReturnType<typeof setTimeout>>();
  readonly #presenceOps = new Map<number, Promise<void>>();
  /** Subscribed users who appear offline. */
  readonly #hidden = new Set<number>();
  /** Subscribed users → settings deliveries applied (a read that raced one is discarded). */
  readonly #visibilityChanges = new Map<number, number>();
  /** Users with no connection left here → when their last one closed (ms). */
  readonly #goneAt = new Map<number, number>();
  readonly #now: () => number;
  readonly #bus: Bus;
  readonly #repository: ChatRepository;
  readonly #logger: Logger;
  readonly #maxPerUser: number;
  readonly #graceMs: number;
  readonly #onUserGone: (userId: number) => void;
  #connections = 0;

  constructor(options: HubOptions) {
    this.#bus = options.bus;
    this.#repository = options.repository;
    this.#logger = options.logger;
    this.#maxPerUser = options.maxConnectionsPerUser;
    this.#graceMs = options.presenceGraceMs;
    this.#onUserGone = options.onUserGone ?? (() => {});
    this.#now = options.now ?? Date.now;
    this.#bus.onDelivery((delivery) => this.#deliverLocal(delivery));
    // Changes the bus found itself (a dead node's users, this node's users re-registered):
    // announced in line with the user's other changes, and only while they still hold.
    this.#bus.onPresenceChange?.((userId, status) =>
      this.#syncPresence(userId, async () => {
        if (this.#joined.has(userId) === (status === "online")) {
          // A dead node's users: gone at about its last heartbeat, which is now at the latest.
          await this.#announce(userId, status, new Date(this.#now()));
        }
      })
    );
  }

  /** Authenticated connections on this node. */
  get connectionCount(): number {
    return this.#connections;
  }

  /** Users with at least one connection on this node. */
  get userCount(): number {
    return this.#peers.size;
  }

  /** Users with at least one connection on this node now. */
  localUserIds(): number[] {
    return [...this.#peers.keys()];
  }

  /** Whether `userId` has a connection on this node. */
  hasLocal(userId: number): boolean {
    return this.#peers.has(userId);
  }

  /**
   * Takes one of the user's `MAX_CONNECTIONS_PER_USER` slots in the whole
   * cluster; false when they hold them all. Each `true` must be matched by
   * exactly one `releaseSlot`.
   */
  acquireSlot(userId: number): Promise<boolean> {
    return this.#bus.acquireConnection(userId, this.#maxPerUser);
  }

  releaseSlot(userId: number): Promise<void> {
    return this.#bus.releaseConnection(userId);
  }

  /**
   * The user's friends online anywhere in the cluster now (a user in grace
   * counts); a friend either of the two blocked is not one (repository `friendIds`).
   */
  async onlineFriends(userId: number): Promise<number[]> {
    return await this.onlineAmong(await this.#repository.friendIds(userId));
  }

  /** Which of `userIds` are online anywhere in the cluster now, in the given order. */
  async onlineAmong(userIds: readonly number[]): Promise<number[]> {
    const online = await this.#bus.online(userIds);
    return userIds.filter((id) => online.has(id));
  }

  /**
   * Adds an authenticated connection; announces the user when they come
   * online. Resolves once this node receives the user's frames from other
   * nodes and holds them present in the cluster, so a snapshot read after it
   * cannot miss a friend who joined at the same moment.
   */
  add(peer: Peer): Promise<void> {
    const held = this.#peers.get(peer.userId);
    if (held === undefined) this.#peers.set(peer.userId, peer);
    else if (held instanceof Set) held.add(peer);
    else if (held !== peer) this.#peers.set(peer.userId, new Set([held, peer]));
    else return this.#syncPresence(peer.userId);
    this.#connections++;
    return this.#syncPresence(peer.userId);
  }

  /** Removes a connection; with the user's last one here, the grace period starts. */
  remove(peer: Peer): void {
    const held = this.#peers.get(peer.userId);
    if (held instanceof Set) {
      if (!held.delete(peer)) return;
      this.#connections--;
      if (held.size > 1) return;
      const [left] = held;
      this.#peers.set(peer.userId, left!);
      return;
    }
    if (held !== peer) return;
    this.#connections--;
    this.#peers.delete(peer.userId);
    this.#goneAt.set(peer.userId, this.#now());
    this.#onUserGone(peer.userId);
    void this.#syncPresence(peer.userId);
  }

  /** Sends `frame` to every connection of `userId` on every node, except `except`. */
  sendToUser(userId: number, frame: string, droppable: boolean, except?: Peer): void {
    this.#sendLocal(userId, frame, droppable, except);
    this.#bus.publish({ userId, frame, droppable });
  }

  /**
   * A committed settings change of `userId`: `frame` (their `settings_updated`) goes to every
   * connection of theirs on every node, each node learning whether they appear offline; when
   * that changed and they are online, their online friends are told `offline` or `online`.
   */
  settingsChanged(userId: number, frame: string, change: VisibilityChange): Promise<void> {
    this.#applyVisibility(userId, change.appearOffline);
    this.#sendLocal(userId, frame, false, undefined);
    this.#bus.publish({ userId, frame, droppable: false, appearOffline: change.appearOffline });
    if (!change.changed) return Promise.resolve();
    return this.#syncPresence(userId, async () => {
      if (!(await this.#bus.online([userId])).has(userId)) return;
      if (change.appearOffline) await this.#tellFriends(userId, "offline", change.lastSeenAt);
      else await this.#tellFriends(userId, "online", undefined);
    });
  }

  /** Whether `userId`, connected here, appears offline (their typing is not forwarded). */
  appearsOffline(userId: number): boolean {
    return this.#hidden.has(userId);
  }

  /** Sends `frame` to every connection of `userId` on every node, then closes them with 1008. */
  endUser(userId: number, frame: string): void {
    this.endLocal(userId, frame);
    this.#bus.publish({ userId, frame, droppable: false, close: true });
  }

  /** Sends `frame` to the user's connections on this node, then closes them with 1008. */
  endLocal(userId: number, frame: string): void {
    const held = this.#peers.get(userId);
    if (held instanceof Set) { for (const peer of [...held]) peer.end(frame); }
    else held?.end(frame);
  }

  /**
   * Shutdown: ends every grace period now (this node will not be there to end
   * them later), so users gone from the whole cluster are announced offline.
   * Done for all of them together, in batches of `ENDING_BATCH` users: one read
   * of who appears offline, the friend lists through the repository's batched
   * loader, one presence look-up of all their friends, and the last-seen times
   * queued at once (written a statement per batch), instead of that work once
   * per user (a drain of 10,000 users spent 0.6 s here on a quiet machine,
   * now 0.15 s).
   */
  async endGraces(): Promise<void> {
    await this.settled();
    const users = [...this.#graces.keys()];
    for (const timer of this.#graces.values()) clearTimeout(timer);
    this.#graces.clear();
    // The batches run together: their queries share the pool, as the users' own would.
    for (let i = 0; i < users.length; i += ENDING_BATCH) {
      const batch = users.slice(i, i + ENDING_BATCH);
      const ended = this.#leaveAll(batch);
      // In line with each user's other presence changes (none is running: settled above).
      for (const userId of batch) void this.#syncPresence(userId, () => ended);
    }
    await this.settled();
  }

  /** Resolves when no presence change is in progress (grace periods may still run). */
  async settled(): Promise<void> {
    while (this.#presenceOps.size > 0) await Promise.all(this.#presenceOps.values());
  }

  #deliverLocal(delivery: BusDelivery): void {
    if (delivery.close === true) return this.endLocal(delivery.userId, delivery.frame);
    if (delivery.appearOffline !== undefined) {
      this.#applyVisibility(delivery.userId, delivery.appearOffline);
    }
    this.#sendLocal(delivery.userId, delivery.frame, delivery.droppable, undefined);
  }

  #sendLocal(userId: number, frame: string, droppable: boolean, except: Peer | undefined): void {
    const held = this.#peers.get(userId);
    if (held instanceof Set) {
      for (const peer of held) if (peer !== except) peer.deliver(frame, droppable);
    } else if (held !== undefined && held !== except) held.deliver(frame, droppable);
  }

  #syncPresence(userId: number, apply = () => this.#applyPresence(userId)): Promise<void> {
    const previous = this.#presenceOps.get(userId) ?? Promise.resolve();
    const op = previous.then(apply).catch((err) => {
      this.#logger.warn("presence_failed", { user_id: userId, error: errorMessage(err) });
    }).finally(() => {
      if (this.#presenceOps.get(userId) === op) this.#presenceOps.delete(userId);
    });
    this.#presenceOps.set(userId, op);
    return op;
  }

  async #applyPresence(userId: number): Promise<void> {
    if (this.#peers.has(userId)) {
      const grace = this.#graces.get(userId);
      if (grace !== undefined) {
        clearTimeout(grace);
        this.#graces.delete(userId);
      }
      // Subscribed before joined: once others can see the user, frames to them arrive here.
      this.#goneAt.delete(userId);
      if (!this.#subscribed.has(userId)) {
        this.#subscribed.add(userId);
        await this.#bus.subscribe(userId);
        // Read once its changes reach this node: none can fall between the two.
        await this.#learnVisibility(userId);
      }
      if (!this.#joined.has(userId)) {
        this.#joined.add(userId);
        if (await this.#bus.join(userId)) await this.#announce(userId, "online");
      }
      return;
    }
    if (this.#subscribed.has(userId)) {
      this.#subscribed.delete(userId);
      this.#hidden.delete(userId);
      this.#visibilityChanges.delete(userId);
      await this.#bus.unsubscribe(userId);
    }
    if (!this.#joined.has(userId) || this.#graces.has(userId)) return;
    if (this.#graceMs <= 0) return await this.#leaveAfterGrace(userId);
    this.#graces.set(
      userId,
      setTimeout(() => {
        this.#graces.delete(userId);
        void this.#syncPresence(userId, () => this.#leaveAfterGrace(userId));
      }, this.#graceMs),
    );
  }

  /** A user's grace ended: the shutdown's batch path with one user (one set of decisions). */
  #leaveAfterGrace(userId: number): Promise<void> {
    return this.#leaveAll([userId]);
  }
  /**
   * Users whose grace ended (one after its timer, or all of them at a shutdown) leave the
   * cluster; those it was the last node of are announced offline to their online friends, with
   * their last seen unless they appear offline. Never rejects: a failed step is logged once (with
   * the first user's id and how many there were) and decided as `#announce` decides for one
   * user (unreadable visibility: an `offline` without its time).
   */
  async #leaveAll(userIds: readonly number[]): Promise<void> {
    // Not those who came back meanwhile.
    const leaving = userIds.filter((id) => !this.#peers.has(id) && this.#joined.has(id));
    const goneAt = new Map<number, number>();
    for (const userId of leaving) {
      this.#joined.delete(userId);
      goneAt.set(userId, this.#goneAt.get(userId) ?? this.#now());
      this.#goneAt.delete(userId);
    }
    let failure: unknown;
    const lastOnes = await Promise.all(leaving.map((id) =>
      this.#bus.leave(id).catch((err) => {
        failure ??= err;
        return false;
      })
    ));
    if (failure !== undefined) {
      this.#logger.warn("presence_failed", {
        user_id: leaving[0],
        users: leaving.length,
        error: errorMessage(failure),
      });
    }
    const gone = leaving.filter((_, i) => lastOnes[i]);
    if (gone.length === 0) return;
    // Of those, who appears offline: read fresh (none is subscribed here any more).
    const seen = await this.#repository.seenStates(gone).catch((err) => {
      this.#logger.warn("appear_offline_unknown", {
        user_id: gone[0],
        users: gone.length,
        error: errorMessage(err),
      });
      return undefined;
    });
    let friendsFailure: unknown;
    const friendLists = await Promise.all(
      gone.map((id) =>
        this.#repository.friendIds(id).catch((err) => {
          friendsFailure ??= err;
          return [] as readonly number[];
        })
      ),
    );
    const told = new Set<number>();
    for (const list of friendLists) for (const friend of list) told.add(friend);
    const online = await this.#bus.online([...told]).catch((err) => {
      friendsFailure ??= err;
      return new Set<number>();
    });
    if (friendsFailure !== undefined) {
      this.#logger.warn("presence_friends_unavailable", {
        user_id: gone[0],
        users: gone.length,
        error: errorMessage(friendsFailure),
      });
    }
    gone.forEach((userId, i) => {
      // Unreadable: nothing that could reveal a hidden user (an offline without its time).
      const hidden = seen === undefined ? undefined : seen.get(userId)?.appearOffline ?? false;
      if (hidden === true) return;
      const at = new Date(goneAt.get(userId)!);
      if (hidden === false) this.#repository.recordLastSeen(userId, at);
      const frame = serverFrames.presence(userId, "offline", hidden === false ? at : undefined);
      for (const friend of friendLists[i]!) {
        if (online.has(friend)) this.sendToUser(friend, frame, true);
      }
    });
  }

  /**
   * The user came online or went offline in the cluster: friends are told unless the user
   * appears offline. An offline records `lastSeenAt`. Whether they appear offline is this
   * node's knowledge while it receives their frames, else read fresh; when it cannot be known,
   * nothing that could reveal a hidden user goes out (no `online`, an `offline` without time).
   */
  async #announce(userId: number, status: "online" | "offline", lastSeenAt?: Date): Promise<void> {
    const hidden = this.#subscribed.has(userId)
      ? this.#hidden.has(userId)
      : await this.#repository.appearsOffline(userId).catch((err) => {
        this.#logger.warn("appear_offline_unknown", {
          user_id: userId,
          error: errorMessage(err),
        });
        return undefined;
      });
    if (hidden === true || (hidden === undefined && status === "online")) return;
    if (status === "offline" && lastSeenAt !== undefined && hidden === false) {
      this.#repository.recordLastSeen(userId, lastSeenAt);
    }
    await this.#tellFriends(userId, status, hidden === false ? lastSeenAt : undefined);
  }

  async #tellFriends(
    userId: number,
    status: "online" | "offline",
    lastSeenAt: Date | undefined,
  ): Promise<void> {
    const friends = await this.#onlineFriendsOrNone(userId);
    const frame = serverFrames.presence(
      userId,
      status,
      status === "offline" ? lastSeenAt : undefined,
    );
    for (const friend of friends) this.sendToUser(friend, frame, true);
  }

  /**
   * Reads whether a user this node just subscribed appears offline, unless a settings delivery
   * came meanwhile (it is newer). Unreadable: taken as hidden, so nothing reveals them.
   */
  async #learnVisibility(userId: number): Promise<void> {
    const before = this.#visibilityChanges.get(userId) ?? 0;
    const hidden = await this.#repository.appearsOffline(userId).catch((err) => {
      this.#logger.warn("appear_offline_unknown", { user_id: userId, error: errorMessage(err) });
      return true;
    });
    if ((this.#visibilityChanges.get(userId) ?? 0) !== before) return;
    if (hidden) this.#hidden.add(userId);
    else this.#hidden.delete(userId);
  }

  /** A settings change of a user whose frames this node receives. */
  #applyVisibility(userId: number, appearOffline: boolean): void {
    if (!this.#subscribed.has(userId)) return;
    this.#visibilityChanges.set(userId, (this.#visibilityChanges.get(userId) ?? 0) + 1);
    if (appearOffline) this.#hidden.add(userId);
    else this.#hidden.delete(userId);
  }

  async #onlineFriendsOrNone(userId: number): Promise<number[]> {
    try {
      return await this.onlineFriends(userId);
    } catch (err) {
      this.#logger.warn("presence_friends_unavailable", {
        user_id: userId,
        error: errorMessage(err),
      });
      return [];
    }
  }
}
