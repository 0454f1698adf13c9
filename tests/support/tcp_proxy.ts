/**
 * @module tcp_proxy
 * A TCP proxy a test can cut or freeze, standing between the server and
 * PostgreSQL to play a database outage.
 */

import { adminUrl } from "./db.ts";

export interface TcpProxy {
  port: number;
  /** Resets every open connection and refuses new ones (database down). */
  cut(): void;
  /** Keeps connections open but forwards nothing (database frozen / network black hole). */
  freeze(): void;
  /** Forwards again (connections cut before stay closed; clients reconnect). */
  restore(): void;
  close(): Promise<void>;
}

export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let mode = "open" as "open" | "cut" | "frozen";
  const pairs = new Set<{ a: Deno.Conn; b: Deno.Conn }>();
  const tasks = new Set<Promise<void>>();
  let thaw = Promise.withResolvers<void>();

  const closePair = (pair: { a: Deno.Conn; b: Deno.Conn }) => {
    if (!pairs.delete(pair)) return;
    for (const conn of [pair.a, pair.b]) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };

  const pump = async (from: Deno.Conn, to: Deno.Conn, pair: { a: Deno.Conn; b: Deno.Conn }) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        while (mode === "frozen") await thaw.promise;
        if (!pairs.has(pair)) break;
        for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* either side closed */ }
    closePair(pair);
  };

  const accepting = (async () => {
    for await (const client of listener) {
      if (mode === "cut") {
        client.close();
        continue;
      }
      let upstream: Deno.Conn;
      try {
        upstream = await Deno.connect(target);
      } catch {
        client.close();
        continue;
      }
      const pair = { a: client, b: upstream };
      pairs.add(pair);
      for (const task of [pump(client, upstream, pair), pump(upstream, client, pair)]) {
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      }
    }
  })().catch(() => {});

  return {
    port: (listener.addr as Deno.NetAddr).port,
    cut() {
      mode = "cut";
      thaw.resolve();
      for (const pair of [...pairs]) closePair(pair);
    },
    freeze() {
      thaw = Promise.withResolvers<void>();
      mode = "frozen";
    },
    restore() {
      mode = "open";
      thaw.resolve();
    },
    async close() {
      mode = "cut";
      thaw.resolve();
      listener.close();
      for (const pair of [...pairs]) closePair(pair);
      await accepting;
      await Promise.all(tasks);
    },
  };
}

/** A proxy in front of the PostgreSQL server of the test databases, and the way through it. */
export interface DatabaseProxy extends TcpProxy {
  /** `url` (a test database's) rewritten to go through the proxy. */
  route(url: string): string;
}

export async function startDatabaseProxy(): Promise<DatabaseProxy> {
  const admin = new URL(await adminUrl());
  const proxy = startTcpProxy({ hostname: admin.hostname, port: Number(admin.port || 5432) });
  return {
    ...proxy,
    route(url) {
      const routed = new URL(url);
      routed.hostname = "127.0.0.1";
      routed.port = String(proxy.port);
      return routed.href;
    },
  };
}
