/**
 * @module bus
 * How nodes reach each other's users: the `Bus` interface and its guarantees
 * (`bus.ts`), the in-memory bus (one node, and tests), and the Redis bus.
 */

export * from "./bus.ts";
export { MemoryBus, MemoryCluster } from "./memory.ts";
export { RedisBus, type RedisBusOptions } from "./redis/mod.ts";
