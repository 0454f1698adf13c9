/**
 * @module bus/bus
 * How nodes reach each other: per-user frame delivery and cluster presence.
 *
 * Delivery is at most once: a frame published while a node is unreachable is
 * lost for that node. That is acceptable because a chat message is stored
 * before it is published, so a client that missed it catches up from the
 * database; typing and presence are ephemeral.
 *
 * Implementations: `bus_memory.ts` (one process; the default, and the
 * stand-in for a cluster in tests) and `redis/bus.ts` (pub/sub between
 * processes, on one Redis or a Redis Cluster). One contract suite runs
 * against all three.
 */

/** A frame for every connection of `userId` on other nodes. */
export interface BusDelivery {
  userId: number;
  /** The serialized server frame, sent as is. */
  frame: string;
  /** The frame may be dropped for a slow consumer (typing, presence). */
  droppable: boolean;
  /**
   * After the frame, close every such connection with 1008 (`session_expired`
   * from `POST /disconnect`). Never dropped.
   */
  close?: boolean;
  /**
   * The frame is the user's `settings_updated`, and this is their `appear_offline` after it:
   * every node holding a connection of theirs applies it (typing is not forwarded while true).
   * Never dropped.
   */
  appearOffline?: boolean;
}

/** A user's presence in the whole cluster. */
export type PresenceStatus = "online" | "offline";

/** What `Bus.inspect` reports. */
export interface BusInspection {
  nodes: { nodeId: string; lastHeartbeatAt: number; self: boolean }[];
  roundTripMs: number | undefined;
}

export interface Bus {
  /** This node's id, unique in the cluster. */
  readonly nodeId: string;
  /** Sets the handler for deliveries published by other nodes to users subscribed here. */
  onDelivery(handler: (delivery: BusDelivery) => void): void;
  /** Starts receiving deliveries for `userId` (this node holds a connection of theirs). */
  subscribe(userId: number): Promise<void>;
  /** Stops receiving deliveries for `userId`. */
  unsubscribe(userId: number): Promise<void>;
  /** Sends `delivery` to every other node subscribed to its user. Never throws. */
  publish(delivery: BusDelivery): void;
  /**
   * Marks `userId` present on this node; true when no node had them before
   * (the user just came online in the cluster).
   */
  join(userId: number): Promise<boolean>;
  /** Marks `userId` gone from this node; true when no node has them now. */
  leave(userId: number): Promise<boolean>;
  /**
   * Sets the handler for presence changes that no `join`/`leave` of this node reported: users
   * of a dead node who are now on no live node ("offline", found by this node's sweep), and
   * users of this node that came back after the bus lost them ("online", e.g. after a Redis
   * restart). Each change is reported to one node only. Optional: a bus whose nodes cannot die
   * apart (the memory bus) has none to report.
   */
  onPresenceChange?(handler: (userId: number, status: PresenceStatus) => void): void;
  /** Which of `userIds` are present on some node. */
  online(userIds: readonly number[]): Promise<Set<number>>;
  /**
   * Takes one of the user's connection slots in the whole cluster; false when
   * the user already holds `max` connections on live nodes. While the broker
   * is unreachable it answers from this node's own count. Never throws.
   */
  acquireConnection(userId: number, max: number): Promise<boolean>;
  /** Gives back a slot `acquireConnection` took. Never throws. */
  releaseConnection(userId: number): Promise<void>;
  /**
   * For operators (the status page): the cluster's nodes as the bus knows them,
   * with when each last proved alive (ms since the epoch), and how long a
   * round trip to the broker takes now (ms; undefined with no broker). Rejects
   * when the broker does not answer.
   */
  inspect?(): Promise<BusInspection>;
  /** Whether the bus reaches the other nodes now (readiness: `/readyz` is 503 when not). */
  isReady(): boolean;
  /** Leaves every user of this node and releases connections. */
  close(): Promise<void>;
}
