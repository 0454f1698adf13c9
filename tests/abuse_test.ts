/**
 * What an attacker holding sockets open gets, against the real server
 * process: request headers that never finish are cut at HEADERS_TIMEOUT_MS,
 * sockets that never upgrade count against MAX_UNAUTH_PER_IP, oversized and
 * malformed handshakes are refused, over TLS as well, and friends chat on
 * meanwhile.
 */

import assert from "node:assert/strict";
import nodeTls from "node:tls";
// @ts-types="npm:@types/ws@^8.18.1"
import { WebSocket as NodeWebSocket } from "ws";
import { connectAs, type TestClient } from "./support/client.ts";
import { type ServerProcess, withServerProcess } from "./support/process.ts";
import { openTcp, type Tcp } from "./support/raw_tcp.ts";
import { TEST_CERT, TEST_KEY } from "./support/test_cert.ts";
import { eventually, sleep, within } from "./support/wait.ts";

/** A server process on a fresh database with users 1 and 2, friends, connected and chatting. */
async function withFriends(
  env: Record<string, string>,
  body: (server: ServerProcess, chat: () => Promise<void>) => Promise<void>,
) {
  await withServerProcess({ env, users: [1, 2], friends: [[1, 2]] }, async (server) => {
    const url = `ws://127.0.0.1:${server.publicPort}/ws`;
    const clients: TestClient[] = [];
    try {
      const alice = await connectAs(url, 1);
      clients.push(alice);
      const bob = await connectAs(url, 2);
      clients.push(bob);
      let n = 0;
      /** One message each way, each delivered. */
      const chat = async () => {
        for (const [from, to, id] of [[alice, bob, 2], [bob, alice, 1]] as const) {
          const text = `hello ${++n}`;
          from.send({ type: "chat_message", recipient_user_id: id, message_text: text });
          assert.equal((await to.next("chat_message", 15_000)).message_text, text);
        }
      };
      await body(server, chat);
    } finally {
      for (const c of clients) c.ws.close();
    }
  });
}

/** The value of one unlabelled or labelled sample on the internal `/metrics`. */
async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.internalPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.slice(name.length + 1));
}

/** Polls `metric` until it equals `expected`; fails after 15 s. */
async function metricReaches(server: ServerProcess, name: string, expected: number) {
  let value = NaN;
  await eventually(
    () => `${name} is ${value}, expected ${expected}`,
    async () => (value = await metric(server, name)) === expected,
    15_000,
  );
}

/** The HTTP status of an upgrade attempt with extra headers (101 when it opened). */
function upgradeStatus(port: number, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const ws = new NodeWebSocket(`ws://127.0.0.1:${port}/ws`, { headers });
    ws.on("open", () => {
      resolve(101);
      ws.terminate();
    });
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on("error", () => resolve(0)); // closed without an HTTP answer
  });
}

Deno.test("request headers not complete at HEADERS_TIMEOUT_MS are answered 408 and closed while two friends keep chatting", async () => {
  // The slowloris: 200 sockets sending one header byte a second.
  await withFriends(
    { HEADERS_TIMEOUT_MS: "1500", MAX_UNAUTH_PER_IP: "1000" },
    async (server, chat) => {
      const port = server.publicPort;
      const dripping = await Promise.all(
        Array.from({ length: 200 }, () => openTcp(port, "GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ")),
      );
      const drip = (async () => {
        while (dripping.some((s) => !s.isEnded())) {
          await Promise.all(dripping.filter((s) => !s.isEnded()).map((s) => s.write("a")));
          await sleep(1000);
        }
      })();
      const silent = await Promise.all(Array.from({ length: 20 }, () => openTcp(port)));
      // A plain HTTP request answered, then the connection left idle (keep-alive).
      const idle = await openTcp(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      try {
        await chat();
        const answers = await within(
          30_000,
          Promise.all([...dripping, ...silent].map((s) => s.ended)),
          () => `${[...dripping, ...silent].filter((s) => !s.isEnded()).length} sockets still open`,
        );
        for (const answer of answers) {
          assert.match(answer, /^HTTP\/1\.1 408 /);
          assert.match(answer, /\{"error":"Request headers not complete in time"\}$/);
        }
        const idleAnswer = await within(30_000, idle.ended, () => "idle keep-alive still open");
        assert.match(idleAnswer, /^HTTP\/1\.1 200 /);
        await drip;
        // Past the deadline, the friends' upgraded connections are untouched.
        await chat();
        await metricReaches(server, "chat_pending_connections", 0);
      } finally {
        for (const s of [...dripping, ...silent, idle]) s.close();
      }
    },
  );
});

/** Opens `count` TCP connections one after another (`first` written on each), oldest first. */
async function openInOrder(server: ServerProcess, count: number, first = ""): Promise<Tcp[]> {
  const sockets: Tcp[] = [];
  const base = await metric(server, "chat_pending_connections");
  for (let i = 1; i <= count; i++) {
    sockets.push(await openTcp(server.publicPort, first));
    await metricReaches(server, "chat_pending_connections", base + i); // accepted in this order
  }
  return sockets;
}

const OVER_LIMIT_ANSWER =
  /^HTTP\/1\.1 429 [\s\S]*\{"error":"Too many unauthenticated connections from this address"\}$/;

Deno.test("at MAX_UNAUTH_PER_IP a new connection drops its address's oldest unfinished one with 429; with sessions in every slot it is answered 429 at once", async () => {
  await withFriends(
    { MAX_UNAUTH_PER_IP: "5", HEADERS_TIMEOUT_MS: "60000", AUTH_TIMEOUT_MS: "60000" },
    async (server, chat) => {
      const port = server.publicPort;
      const held = [
        ...await openInOrder(server, 4),
        ...await openInOrder(server, 1, "GET /ws HTTP/1.1\r\nHost: x\r\n"), // half a request
      ];
      const sessions: NodeWebSocket[] = [];
      try {
        held.push(await openTcp(port));
        const oldest = await within(15_000, held[0]!.ended, () => "the oldest socket is open");
        assert.match(oldest, OVER_LIMIT_ANSWER);
        assert.deepEqual(held.map((s) => s.isEnded()), [true, false, false, false, false, false]);
        assert.equal(await metric(server, "chat_connections_evicted_per_address_total"), 1);
        await metricReaches(server, "chat_pending_connections", 5);
        // Upgraded sessions that do not authenticate hold their slots: they are not dropped.
        for (let i = 0; i < 5; i++) {
          const ws = new NodeWebSocket(`ws://127.0.0.1:${port}/ws`);
          sessions.push(ws);
          await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
        }
        await within(15_000, Promise.all(held.map((s) => s.ended)), () => "a socket is open");
        assert.equal(await metric(server, "chat_connections_evicted_per_address_total"), 6);
        const refused = await openTcp(port);
        assert.match(
          await within(15_000, refused.ended, () => "open past the limit"),
          OVER_LIMIT_ANSWER,
        );
        assert.equal(await upgradeStatus(port), 429);
        assert.equal(await metric(server, "chat_connections_refused_per_address_total"), 2);
        assert.ok(sessions.every((ws) => ws.readyState === NodeWebSocket.OPEN));
        await chat(); // authenticated sessions hold no slot
        sessions.pop()!.close();
        await metricReaches(server, 'chat_connections{state="unauthenticated"}', 4);
        assert.equal(await upgradeStatus(port), 101);
      } finally {
        for (const ws of sessions) ws.terminate();
        for (const s of held) s.close();
      }
    },
  );
});

Deno.test("with MAX_UNAUTH_PER_IP taken by slow-header sockets, a real client from the same address upgrades and authenticates at once, and the oldest slow socket is the one dropped", async () => {
  // The slowloris from one address (a school, a carrier's NAT) that real users share.
  await withFriends(
    { MAX_UNAUTH_PER_IP: "20", HEADERS_TIMEOUT_MS: "60000" },
    async (server, chat) => {
      const dripping = await openInOrder(server, 20, "GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ");
      const drip = setInterval(() => {
        for (const s of dripping) if (!s.isEnded()) void s.write("a");
      }, 1000);
      let client: TestClient | undefined;
      try {
        client = await connectAs(`ws://127.0.0.1:${server.publicPort}/ws`, 1);
        const oldest = await within(15_000, dripping[0]!.ended, () => "the oldest is open");
        assert.match(oldest, OVER_LIMIT_ANSWER);
        assert.deepEqual(
          dripping.map((s) => s.isEnded()),
          dripping.map((_, i) => i === 0),
          "only the oldest was dropped",
        );
        assert.equal(await metric(server, "chat_connections_evicted_per_address_total"), 1);
        assert.equal(await metric(server, "chat_connections_refused_per_address_total"), 0);
        await chat();
      } finally {
        clearInterval(drip);
        client?.ws.close();
        for (const s of dripping) s.close();
      }
    },
  );
});

Deno.test("sockets from a trusted proxy are not counted per TCP address; X-Forwarded-For still is at the upgrade", async () => {
  const env = { MAX_UNAUTH_PER_IP: "2", TRUSTED_PROXIES: "127.0.0.1", HEADERS_TIMEOUT_MS: "60000" };
  await withFriends(env, async (server, chat) => {
    const port = server.publicPort;
    const held = await Promise.all(Array.from({ length: 4 }, () => openTcp(port)));
    const clients: NodeWebSocket[] = [];
    try {
      await metricReaches(server, "chat_pending_connections", 4);
      const open = (ip: string) =>
        new Promise<number>((resolve) => {
          const ws = new NodeWebSocket(`ws://127.0.0.1:${port}/ws`, {
            headers: { "x-forwarded-for": ip },
          });
          clients.push(ws);
          ws.on("open", () => resolve(101));
          ws.on("unexpected-response", (_req, res) => {
            resolve(res.statusCode ?? 0);
            res.resume();
          });
          ws.on("error", () => resolve(0));
        });
      assert.equal(await open("203.0.113.7"), 101);
      assert.equal(await open("203.0.113.7"), 101);
      assert.equal(await open("203.0.113.7"), 429);
      assert.equal(await open("198.51.100.1"), 101);
      assert.deepEqual(held.map((s) => s.isEnded()), [false, false, false, false]);
      await chat();
    } finally {
      for (const ws of clients) ws.terminate();
      for (const s of held) s.close();
    }
  });
});

Deno.test("a 64 KiB request header and an unsupported Sec-WebSocket-Version are refused with 4xx", async () => {
  await withFriends({}, async (server, chat) => {
    const port = server.publicPort;
    const big = await openTcp(
      port,
      `GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`,
    );
    assert.match(await within(15_000, big.ended, () => "64 KiB header open"), /^HTTP\/1\.1 431 /);
    const version = await openTcp(
      port,
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n",
    );
    assert.match(await within(15_000, version.ended, () => "version 7 open"), /^HTTP\/1\.1 400 /);
    await chat();
  });
});

Deno.test("over TLS, a handshake or a request that never comes is cut at HEADERS_TIMEOUT_MS, and a wss session outlives it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gb-abuse-tls-" });
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, TEST_CERT);
    await Deno.writeTextFile(`${dir}/key.pem`, TEST_KEY);
    const env = {
      TLS_CERT_FILE: `${dir}/cert.pem`,
      TLS_KEY_FILE: `${dir}/key.pem`,
      HEADERS_TIMEOUT_MS: "1500",
    };
    await withServerProcess({ env }, async (server) => {
      const held: Tcp[] = [];
      let ws: NodeWebSocket | undefined;
      let tls: nodeTls.TLSSocket | undefined;
      try {
        const port = server.publicPort;
        held.push(await openTcp(port)); // never starts the handshake
        const socket = tls = nodeTls.connect({
          host: "127.0.0.1",
          port,
          rejectUnauthorized: false,
        });
        const tlsAnswer = new Promise<string>((resolve) => {
          let received = "";
          socket.on("data", (chunk) => received += String(chunk));
          socket.on("error", () => {});
          socket.on("close", () => resolve(received));
        });
        const session = ws = new NodeWebSocket(`wss://127.0.0.1:${port}/ws`, {
          rejectUnauthorized: false,
        });
        await new Promise((resolve, reject) => session.once("open", resolve).once("error", reject));
        assert.equal(await within(15_000, held[0]!.ended, () => "the raw socket is open"), "");
        assert.match(
          await within(15_000, tlsAnswer, () => "the TLS socket is open"),
          /^HTTP\/1\.1 408 /,
        );
        await sleep(2000); // the session is past the deadline of its connection
        const pong = new Promise((resolve) =>
          session.once("message", (data) => resolve(String(data)))
        );
        session.send(JSON.stringify({ type: "ping" }));
        assert.match(String(await within(15_000, pong, () => "no pong over wss")), /"pong"/);
      } finally {
        ws?.terminate();
        tls?.destroy();
        for (const s of held) s.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
