/**
 * The server as a process: it refuses bad configuration in one line, keeps
 * its memory bounded against oversized and endless messages and masses of
 * idle sockets, and drains on SIGTERM without losing an acknowledged message.
 */

import assert from "node:assert/strict";
import { RawWs } from "./raw_ws.ts";
import { TestClient } from "./support/client.ts";
import { createTestDatabase } from "./support/db.ts";
import { runServerExpectingFailure, spawnServer } from "./support/process.ts";
import { TEST_SECRET } from "./support/server.ts";
import { importTokenKey, signToken } from "../src/token.ts";

const MiB = 1024 * 1024;
const PATH = Deno.env.get("PATH") ?? "";

Deno.test("the server refuses to start without a usable AUTH_SECRET, in one line", async () => {
  for (const secret of [undefined, "", "default_secret"]) {
    const env: Record<string, string> = { PATH };
    if (secret !== undefined) env.AUTH_SECRET = secret;
    const { code, stderr } = await runServerExpectingFailure(env);
    assert.notEqual(code, 0);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, /AUTH_SECRET/);
  }
});

Deno.test("a bad setting is refused at start with a one-line message naming it", async () => {
  for (
    const [name, value] of [["PORT", "http"], ["WS_TRANSPORT", "uws"], ["MAX_FRAME_BYTES", "-1"]]
  ) {
    const { code, stderr } = await runServerExpectingFailure({
      PATH,
      AUTH_SECRET: "x",
      [name!]: value!,
    });
    assert.notEqual(code, 0);
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    assert.match(stderr, new RegExp(name!));
  }
});

/** A server process on a fresh database, with users 1–2 friends. */
async function withProcess(
  env: Record<string, string>,
  body: (
    server: Awaited<ReturnType<typeof spawnServer>>,
    db: Awaited<ReturnType<typeof createTestDatabase>>,
  ) => Promise<void>,
) {
  const db = await createTestDatabase();
  let server;
  try {
    server = await spawnServer({ PATH, AUTH_SECRET: TEST_SECRET, DATABASE_URL: db.url, ...env });
    await db.addUser(1);
    await db.addUser(2);
    await db.befriend(1, 2);
    await body(server, db);
  } finally {
    if (server !== undefined) {
      try {
        await server.stop("SIGKILL");
      } catch { /* stopped by the test */ }
    }
    await db.drop();
  }
}

Deno.test("a 64 MiB message in small fragments is cut off at MAX_FRAME_BYTES with 1009 and memory stays bounded", async () => {
  await withProcess({}, async (server) => {
    const before = await server.rss();
    let peak = before;
    // ws discards the rest of a message it refused until the close handshake
    // ends, so the bytes keep flowing but are never held.
    for (const [fragment, total] of [[64 * 1024, 64 * MiB], [16, MiB / 4]] as const) {
      const raw = await RawWs.connect(server.publicPort, "/ws");
      const payload = new Uint8Array(fragment).fill(0x61);
      let sent;
      try {
        await raw.send({ opcode: 1, payload, fin: false });
        for (sent = fragment; sent < total; sent += fragment) {
          await raw.send({ opcode: 0, payload, fin: false });
          if (sent % (4 * MiB) < fragment) peak = Math.max(peak, await server.rss());
        }
      } catch { /* the server dropped the connection: expected */ }
      assert.equal(await raw.readClose(), 1009);
      raw.close();
      peak = Math.max(peak, await server.rss());
    }
    assert.ok(peak - before < 32 * MiB, `RSS grew by ${((peak - before) / MiB).toFixed(1)} MiB`);
  });
});

Deno.test("rounds of 2,000 sockets that never authenticate are closed at the auth timeout and leave no memory behind", async () => {
  const db = await createTestDatabase();
  // --expose-gc makes each /metrics scrape report the live heap after a full GC.
  const server = await spawnServer({
    PATH,
    AUTH_SECRET: TEST_SECRET,
    DATABASE_URL: db.url,
    AUTH_TIMEOUT_MS: "1000",
    MAX_UNAUTH_PER_IP: "5000",
  }, ["--v8-flags=--expose-gc"]);
  try {
    const url = `ws://127.0.0.1:${server.publicPort}/ws`;
    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${server.internalPort}/metrics`)).text();
      const heap = Number(/^process_heap_used_bytes (\d+)$/m.exec(text)?.[1]);
      const unauthenticated = Number(
        /^chat_connections\{state="unauthenticated"\} (\d+)$/m.exec(text)?.[1],
      );
      return { heap, unauthenticated };
    };
    const heaps: number[] = [];
    for (let round = 0; round < 3; round++) {
      const clients: TestClient[] = [];
      for (let i = 0; i < 2000; i += 100) {
        clients.push(...await Promise.all(Array.from({ length: 100 }, () => TestClient.open(url))));
      }
      const codes = await Promise.all(clients.map((c) => c.closedWith(15_000)));
      assert.ok(codes.every((code) => code === 1008), `close codes: ${[...new Set(codes)]}`);
      await new Promise((r) => setTimeout(r, 500));
      const { heap, unauthenticated } = await scrape();
      assert.equal(unauthenticated, 0);
      heaps.push(heap);
    }
    // The first round warms code and caches; a leak of even 500 bytes a
    // socket would show as 2 MiB over the next 4,000.
    assert.ok(
      heaps[2]! - heaps[0]! < 2 * MiB,
      `live heap after each round: ${heaps.map((h) => (h / MiB).toFixed(1)).join(", ")} MiB`,
    );
  } finally {
    await server.stop("SIGKILL");
    await db.drop();
  }
});

Deno.test("SIGTERM drains: every message acknowledged is stored, every stored one acknowledged, sockets close with 1001, exit 0", async () => {
  await withProcess({ CHAT_RATE_BURST: "1000", FRAME_RATE_PER_S: "1000" }, async (server, db) => {
    const key = await importTokenKey(TEST_SECRET);
    const url = `ws://127.0.0.1:${server.publicPort}/ws`;
    const connectAs = async (id: number) => {
      const c = await TestClient.open(url);
      c.send({
        type: "authenticate",
        auth_token: await signToken(key, id, Math.floor(Date.now() / 1000)),
      });
      await c.next("authenticated");
      return c;
    };
    const alice = await connectAs(1);
    const bob = await connectAs(2);
    const total = 300;
    const send = (i: number) =>
      alice.send({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: `m${i}`,
        client_message_id: `m${i}`,
      });
    for (let i = 0; i < total / 2; i++) send(i);
    const first = await alice.next("message_sent"); // stored; the rest are in flight
    alice.frames.unshift(first);
    Deno.kill(server.pid, "SIGTERM");
    for (let i = total / 2; i < total; i++) send(i);
    const [aliceClose, bobClose] = await Promise.all([
      alice.closedWith(15_000),
      bob.closedWith(15_000),
    ]);
    assert.equal(await server.stop("SIGTERM"), 0);
    assert.equal(aliceClose, 1001);
    assert.equal(bobClose, 1001);
    const acked = new Set(
      alice.frames.filter((f) => f.type === "message_sent").map((f) =>
        (f.data as Record<string, unknown>).client_message_id
      ),
    );
    const rows = await db.sql`select client_message_id from messages`;
    const stored = new Set(rows.map((r) => r.client_message_id));
    assert.ok(acked.size > 0, "nothing was acknowledged before the drain");
    assert.deepEqual([...stored].sort(), [...acked].sort());
    const refused = alice.frames.filter((f) => f.type === "error");
    assert.ok(refused.every((f) => f.code === "unavailable"), JSON.stringify(refused.slice(0, 3)));
    assert.ok(server.lines.some((line) => line.includes('"shutdown_complete"')));
  });
});
