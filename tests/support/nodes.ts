/**
 * @module nodes
 * Several real chat servers as nodes of one cluster for a test: one database,
 * and one bus cluster of the given kind (memory, or Redis under its own prefix).
 */

import type { Bus } from "../../src/bus/bus.ts";
import type { ClusterKind } from "./bus_cluster.ts";
import { kindName } from "./bus_cluster.ts";
import { createTestDatabase, type TestDatabase } from "./db.ts";
import { startTestServer, type TestServer } from "./server.ts";

export interface NodesOptions {
  /** How many nodes (default 2). */
  nodes?: number;
  /** Environment of every node. */
  env?: Record<string, string>;
  /** Users to create (default 1..4). */
  users?: number[];
  /** Approved friendships to create (default 1–2 and 3–1). */
  friends?: [number, number][];
  presenceTtlS?: number;
  /** Wraps each node's bus (e.g. to slow one of its calls down). */
  wrapBus?: (bus: Bus) => Bus;
}

/** A test on `options.nodes` nodes of a fresh `kind` cluster; ignored when the kind cannot run. */
export function nodesTest(
  kind: ClusterKind,
  name: string,
  options: NodesOptions,
  body: (nodes: TestServer[], db: TestDatabase) => Promise<void>,
): void {
  Deno.test({
    name: kindName(name, kind),
    ignore: kind.skip !== undefined,
    async fn() {
      const db = await createTestDatabase();
      const cluster = kind.create(options.presenceTtlS ?? 2);
      const nodes: TestServer[] = [];
      try {
        for (let i = 0; i < (options.nodes ?? 2); i++) {
          const bus = async () => (options.wrapBus ?? ((b: Bus) => b))(await cluster.node());
          nodes.push(await startTestServer({ db, bus, env: options.env ?? {} }));
        }
        for (const id of options.users ?? [1, 2, 3, 4]) await db.addUser(id);
        for (const [a, b] of options.friends ?? [[1, 2], [3, 1]]) await db.befriend(a, b);
        await body(nodes, db);
      } finally {
        for (const node of nodes) await node.close();
        await cluster.cleanup();
        await db.drop();
      }
    },
  });
}

/** A promise of `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `bus` with `subscribe` confirmed only after `ms` (a loaded or distant broker). */
export function slowSubscribe(bus: Bus, ms: number): Bus {
  return new Proxy(bus, {
    get(target, prop) {
      if (prop === "subscribe") {
        return async (userId: number) => {
          await sleep(ms);
          await target.subscribe(userId);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
