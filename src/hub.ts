/**
 * @module hub
 * This node's authenticated connections by user, routing of frames to users
 * (locally and through the bus to other nodes), and presence.
 *
 * Presence changes of one user are applied one at a time, each from the
 * current state (local connections vs. joined), so a quick disconnect and
 * reconnect can never leave the user wrongly offline.
 */

import type { Bus, BusDelivery } from "./bus.ts";
import type { Logger } from "./log.ts";
import { errorMessage } from "./log.ts";
import { serverFrames } from "./protocol.ts";
import type { ChatRepository } from "./repository.ts";

/** What the hub needs of a connection. */
export interface Peer {
  readonly userId: number;
  /** Sends a serialized frame; a droppable one may be shed for a slow consumer. */
  deliver(frame: string, droppable: boolean): void;
}

export interface HubOptions {
  bus: Bus;
  repository: ChatRepository;
  logger: Logger;
  maxConnectionsPerUser: number;
}

export class Hub {
  readonly #peers = new Map<number, Set<Peer>>();
  readonly #joined = new Set<number>();
  readonly #presenceOps = new Map<number, Promise<void>>();
  readonly #bus: Bus;
  readonly #repository: ChatRepository;
  readonly #logger: Logger;
  readonly #maxPerUser: number;
  #connections = 0;

  constructor(options: HubOptions) {
    this.#bus = options.bus;
    this.#repository = options.repository;
    this.#logger = options.logger;
    this.#maxPerUser = options.maxConnectionsPerUser;
    this.#bus.onDelivery((delivery) => this.#deliverLocal(delivery));
    // Changes the bus found itself (a dead node's users, this node's users re-registered):
    // announced in line with the user's other changes, and only while they still hold.
    this.#bus.onPresenceChange?.((userId, status) =>
      this.#syncPresence(userId, async () => {
        if (this.#joined.has(userId) === (status === "online")) {
          await this.#announce(userId, status);
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

  /** Whether `userId` may open one more connection on this node. */
  hasRoomFor(userId: number): boolean {
    return (this.#peers.get(userId)?.size ?? 0) < this.#maxPerUser;
  }

  /** The user's friends online anywhere in the cluster now. */
  async onlineFriends(userId: number): Promise<number[]> {
    const friends = await this.#repository.friendIds(userId);
    const online = await this.#bus.online(friends);
    return friends.filter((id) => online.has(id));
  }

  /** Adds an authenticated connection; announces the user when they come online. */
  add(peer: Peer): void {
    const set = this.#peers.get(peer.userId) ?? new Set();
    set.add(peer);
    this.#peers.set(peer.userId, set);
    this.#connections++;
    if (set.size === 1) this.#syncPresence(peer.userId);
  }

  /** Removes a connection; announces the user offline when it was their last. */
  remove(peer: Peer): void {
    const set = this.#peers.get(peer.userId);
    if (set === undefined || !set.delete(peer)) return;
    this.#connections--;
    if (set.size > 0) return;
    this.#peers.delete(peer.userId);
    this.#syncPresence(peer.userId);
  }

  /** Sends `frame` to every connection of `userId` on every node, except `except`. */
  sendToUser(userId: number, frame: string, droppable: boolean, except?: Peer): void {
    this.#sendLocal(userId, frame, droppable, except);
    this.#bus.publish({ userId, frame, droppable });
  }

  /** Resolves when no presence change is in progress. */
  async settled(): Promise<void> {
    while (this.#presenceOps.size > 0) await Promise.all(this.#presenceOps.values());
  }

  #deliverLocal(delivery: BusDelivery): void {
    this.#sendLocal(delivery.userId, delivery.frame, delivery.droppable, undefined);
  }

  #sendLocal(userId: number, frame: string, droppable: boolean, except: Peer | undefined): void {
    const set = this.#peers.get(userId);
    if (set === undefined) return;
    for (const peer of set) if (peer !== except) peer.deliver(frame, droppable);
  }

  #syncPresence(userId: number, apply = () => this.#applyPresence(userId)): void {
    const previous = this.#presenceOps.get(userId) ?? Promise.resolve();
    const op = previous.then(apply).catch((err) => {
      this.#logger.warn("presence_failed", { user_id: userId, error: errorMessage(err) });
    }).finally(() => {
      if (this.#presenceOps.get(userId) === op) this.#presenceOps.delete(userId);
    });
    this.#presenceOps.set(userId, op);
  }

  async #applyPresence(userId: number): Promise<void> {
    const here = this.#peers.has(userId);
    if (here === this.#joined.has(userId)) return;
    if (here) {
      this.#joined.add(userId);
      await this.#bus.subscribe(userId);
      if (await this.#bus.join(userId)) await this.#announce(userId, "online");
    } else {
      this.#joined.delete(userId);
      await this.#bus.unsubscribe(userId);
      if (await this.#bus.leave(userId)) await this.#announce(userId, "offline");
    }
  }

  async #announce(userId: number, status: "online" | "offline"): Promise<void> {
    const friends = await this.#onlineFriendsOrNone(userId);
    const frame = serverFrames.presence(userId, status);
    for (const friend of friends) this.sendToUser(friend, frame, true);
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
