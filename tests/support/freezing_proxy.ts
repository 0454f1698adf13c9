/**
 * @module freezing_proxy
 * A TCP proxy that can go silent like a network black hole (a partition or a failover that
 * drops packets instead of resetting connections), to play a Redis path that dies quietly.
 *
 * While frozen nothing is forwarded and nothing is closed, for connections old and new. What a
 * side sends meanwhile is held and forwarded once restored, as TCP would retransmit it, unless
 * that side resets its connection first: a reset sender stops retransmitting, so what it held
 * is lost. A side that closes normally (FIN) still has its held bytes delivered on restore.
 */

export interface FreezingProxy {
  port: number;
  /** Stops forwarding: both directions, or only the replies (target → client). */
  freeze(direction?: "both" | "replies"): void;
  /** Forwards again, held bytes first. */
  restore(): void;
  close(): Promise<void>;
}

export function startFreezingProxy(target: { hostname: string; port: number }): FreezingProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let frozen = "none" as "none" | "both" | "replies";
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  /** Wakes every waiting writer (new bytes, freeze, restore, close). */
  const waiters = new Set<() => void>();
  const wakeAll = () => {
    for (const wake of [...waiters]) wake();
  };

  const closePair = (pair: Deno.Conn[]) => {
    for (const conn of pair) {
      if (!conns.delete(conn)) continue;
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    wakeAll();
  };

  /** Copies `from` to `to` through a queue that holds while frozen; `replies`: from the target. */
  const pump = async (from: Deno.Conn, to: Deno.Conn, replies: boolean, pair: Deno.Conn[]) => {
    const isFrozen = () => frozen === "both" || (frozen === "replies" && replies);
    const queue: Uint8Array[] = [];
    let ended = false;
    const writer = (async () => {
      while (conns.has(to)) {
        if (queue.length === 0 || isFrozen()) {
          if (ended && queue.length === 0) break;
          await new Promise<void>((resolve) => {
            const wake = () => (waiters.delete(wake), resolve());
            waiters.add(wake);
          });
          continue;
        }
        const chunk = queue.shift()!;
        for (let off = 0; off < chunk.length;) off += await to.write(chunk.subarray(off));
      }
    })().catch(() => {});
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        queue.push(buf.slice(0, n));
        wakeAll();
      }
    } catch {
      queue.length = 0; // reset: the sender stopped retransmitting what was held
    }
    ended = true;
    wakeAll();
    await writer;
    closePair(pair);
  };

  const accepting = (async () => {
    for await (const client of listener) {
      let upstream: Deno.Conn;
      try {
        upstream = await Deno.connect(target);
      } catch {
        client.close();
        continue;
      }
      const pair = [client, upstream];
      for (const conn of pair) conns.add(conn);
      for (
        const task of [pump(client, upstream, false, pair), pump(upstream, client, true, pair)]
      ) {
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      }
    }
  })().catch(() => {});

  return {
    port: (listener.addr as Deno.NetAddr).port,
    freeze(direction = "both") {
      frozen = direction;
      wakeAll();
    },
    restore() {
      frozen = "none";
      wakeAll();
    },
    async close() {
      frozen = "none";
      listener.close();
      closePair([...conns]);
      await accepting;
      await Promise.all(tasks);
    },
  };
}
