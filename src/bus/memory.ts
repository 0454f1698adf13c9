/**
 * @module bus/memory
 * A `Bus` inside one process. A `MemoryCluster` stands for the shared
 * broker; each node gets its own `MemoryBus` from it, so tests can run
 * several hubs as several nodes without Redis.
 */

import type { Bus, BusDelivery, BusInspection, PresenceStatus } from "./bus.ts";

/**
 * The state several in-process nodes share: which nodes are live. What each
 * node holds of a user (subscribed, joined, connection slots) is kept by that
 * node in one collection for all its users, not in collections per user (a
 * node with 10,000 users would hold 30,000 small sets), and the cluster's view
 * of a user is the live nodes' together (there are one to a few).
 */
export class MemoryCluster {
  /** Nodes not closed or abandoned. */
  readonly live = new Set<MemoryBus>();
  #nodes = 0;

  /** A bus for one more node of this cluster. */
  node(): MemoryBus {
    const bus = new MemoryBus(this, `node-${++this.#nodes}`);
    this.live.add(bus);
    return bus;
  }
}

export class MemoryBus implements Bus {
  #handler: (delivery: BusDelivery) => void = () => {};
  #onPresence: (userId: number, status: PresenceStatus) => void = () => {};
  /** Users present in the cluster through this node. */
  readonly #joined = new Set<number>();
  /** Users whose deliveries this node receives. */
  readonly #subscribed = new Set<number>();
  /** User id → connection slots this node holds. */
  readonly #slots = new Map<number, number>();
  /** Abandoned: every call is a no-op, like calls into a dead process. */
  #dead = false;

  constructor(private readonly cluster: MemoryCluster, readonly nodeId: string) {}

  onDelivery(handler: (delivery: BusDelivery) => void): void {
    this.#handler = handler;
  }

  onPresenceChange(handler: (userId: number, status: PresenceStatus) => void): void {
    this.#onPresence = handler;
  }

  subscribe(userId: number): Promise<void> {
    if (this.#dead) return Promise.resolve();
    this.#subscribed.add(userId);
    return Promise.resolve();
  }

  unsubscribe(userId: number): Promise<void> {
    if (this.#dead) return Promise.resolve();
    this.#subscribed.delete(userId);
    return Promise.resolve();
  }

  publish(delivery: BusDelivery): void {
    if (this.#dead) return;
    for (const node of this.cluster.live) {
      // Asynchronous like a real broker, so no caller depends on re-entrancy.
      if (node !== this && node.#subscribed.has(delivery.userId)) {
        queueMicrotask(() => node.#handler(delivery));
      }
    }
  }

  /** Whether `userId` is present through any live node but `except`. */
  #presentElsewhere(userId: number): boolean {
    for (const node of this.cluster.live) {
      if (node !== this && node.#joined.has(userId)) return true;
    }
    return false;
  }

  join(userId: number): Promise<boolean> {
    if (this.#dead) return Promise.resolve(false);
    const first = !this.#joined.has(userId) && !this.#presentElsewhere(userId);
    this.#joined.add(userId);
    return Promise.resolve(first);
  }

  leave(userId: number): Promise<boolean> {
    if (this.#dead) return Promise.resolve(false);
    this.#joined.delete(userId);
    return Promise.resolve(!this.#presentElsewhere(userId));
  }

  online(userIds: readonly number[]): Promise<Set<number>> {
    const live = [...this.cluster.live];
    return Promise.resolve(
      new Set(userIds.filter((id) => live.some((node) => node.#joined.has(id)))),
    );
  }

  acquireConnection(userId: number, max: number): Promise<boolean> {
    if (this.#dead) return Promise.resolve(false);
    let held = 0;
    for (const node of this.cluster.live) held += node.#slots.get(userId) ?? 0;
    if (held >= max) return Promise.resolve(false);
    this.#slots.set(userId, (this.#slots.get(userId) ?? 0) + 1);
    return Promise.resolve(true);
  }

  releaseConnection(userId: number): Promise<void> {
    if (this.#dead) return Promise.resolve();
    const count = (this.#slots.get(userId) ?? 0) - 1;
    if (count > 0) this.#slots.set(userId, count);
    else this.#slots.delete(userId);
    return Promise.resolve();
  }

  isReady(): boolean {
    return !this.#dead;
  }

  inspect(): Promise<BusInspection> {
    const now = Date.now();
    const nodes = [...this.cluster.live].map((bus) => ({
      nodeId: bus.nodeId,
      lastHeartbeatAt: now,
      self: bus === this,
    }));
    return Promise.resolve({ nodes, roundTripMs: undefined });
  }

  /** Leaves every user, frees the node's slots; afterwards every call is a no-op. */
  async close(): Promise<void> {
    for (const userId of [...this.#joined]) await this.leave(userId);
    this.#dead = true;
    this.#detach();
  }

  /**
   * Drops this node as if its process had died: its users leave, and those now on no node
   * are reported offline to one surviving node's `onPresenceChange`, as a Redis sweep would.
   */
  abandon(): void {
    this.#dead = true;
    this.#detach();
    const survivor = this.cluster.live.values().next().value;
    for (const userId of [...this.#joined]) {
      this.#joined.delete(userId);
      if (this.#presentElsewhere(userId)) continue;
      if (survivor !== undefined) queueMicrotask(() => survivor.#onPresence(userId, "offline"));
    }
  }

  /** Out of the cluster: its slots and subscriptions count no more. */
  #detach(): void {
    this.cluster.live.delete(this);
    this.#slots.clear();
    this.#subscribed.clear();
  }
}
