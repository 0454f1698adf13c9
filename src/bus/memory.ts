/**
 * @module bus/memory
 * A `Bus` inside one process. A `MemoryCluster` stands for the shared
 * broker; each node gets its own `MemoryBus` from it, so tests can run
 * several hubs as several nodes without Redis.
 */

import type { Bus, BusDelivery, BusInspection, PresenceStatus } from "./bus.ts";

/** The state several in-process nodes share. */
export class MemoryCluster {
  readonly subscribers = new Map<number, Set<MemoryBus>>();
  readonly presence = new Map<number, Set<string>>();
  /** User id → connection slots held, by node id. */
  readonly connections = new Map<number, Map<string, number>>();
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
  readonly #joined = new Set<number>();
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
    const set = this.cluster.subscribers.get(userId) ?? new Set();
    set.add(this);
    this.cluster.subscribers.set(userId, set);
    return Promise.resolve();
  }

  unsubscribe(userId: number): Promise<void> {
    if (this.#dead) return Promise.resolve();
    const set = this.cluster.subscribers.get(userId);
    set?.delete(this);
    if (set?.size === 0) this.cluster.subscribers.delete(userId);
    return Promise.resolve();
  }

  publish(delivery: BusDelivery): void {
    if (this.#dead) return;
    const set = this.cluster.subscribers.get(delivery.userId);
    if (set === undefined) return;
    for (const node of set) {
      // Asynchronous like a real broker, so no caller depends on re-entrancy.
      if (node !== this) queueMicrotask(() => node.#handler(delivery));
    }
  }

  join(userId: number): Promise<boolean> {
    if (this.#dead) return Promise.resolve(false);
    const nodes = this.cluster.presence.get(userId) ?? new Set();
    const first = nodes.size === 0;
    nodes.add(this.nodeId);
    this.cluster.presence.set(userId, nodes);
    this.#joined.add(userId);
    return Promise.resolve(first);
  }

  leave(userId: number): Promise<boolean> {
    if (this.#dead) return Promise.resolve(false);
    this.#joined.delete(userId);
    const nodes = this.cluster.presence.get(userId);
    if (nodes === undefined) return Promise.resolve(true);
    nodes.delete(this.nodeId);
    if (nodes.size > 0) return Promise.resolve(false);
    this.cluster.presence.delete(userId);
    return Promise.resolve(true);
  }

  online(userIds: readonly number[]): Promise<Set<number>> {
    return Promise.resolve(
      new Set(userIds.filter((id) => (this.cluster.presence.get(id)?.size ?? 0) > 0)),
    );
  }

  acquireConnection(userId: number, max: number): Promise<boolean> {
    if (this.#dead) return Promise.resolve(false);
    const byNode = this.cluster.connections.get(userId) ?? new Map<string, number>();
    let held = 0;
    for (const count of byNode.values()) held += count;
    if (held >= max) return Promise.resolve(false);
    byNode.set(this.nodeId, (byNode.get(this.nodeId) ?? 0) + 1);
    this.cluster.connections.set(userId, byNode);
    return Promise.resolve(true);
  }

  releaseConnection(userId: number): Promise<void> {
    if (this.#dead) return Promise.resolve();
    const byNode = this.cluster.connections.get(userId);
    const count = (byNode?.get(this.nodeId) ?? 0) - 1;
    if (count > 0) byNode?.set(this.nodeId, count);
    else byNode?.delete(this.nodeId);
    if (byNode?.size === 0) this.cluster.connections.delete(userId);
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
      const nodes = this.cluster.presence.get(userId);
      nodes?.delete(this.nodeId);
      if ((nodes?.size ?? 0) > 0) continue;
      this.cluster.presence.delete(userId);
      if (survivor !== undefined) queueMicrotask(() => survivor.#onPresence(userId, "offline"));
    }
  }

  #detach(): void {
    this.cluster.live.delete(this);
    for (const [userId, byNode] of this.cluster.connections) {
      byNode.delete(this.nodeId);
      if (byNode.size === 0) this.cluster.connections.delete(userId);
    }
    for (const [userId, set] of this.cluster.subscribers) {
      set.delete(this);
      if (set.size === 0) this.cluster.subscribers.delete(userId);
    }
  }
}
