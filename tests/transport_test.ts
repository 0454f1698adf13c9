/** @module transport_test The `Transport` contract, one suite run against the `ws` and the native transport. */

import assert from "node:assert/strict";
import type {
  Listener,
  ListenOptions,
  Transport,
  UpgradeInfo,
} from "../src/transport/transport.ts";
import type { WsConnection } from "../src/transport/transport.ts";
import { nativeTransport } from "../src/transport/native.ts";
import { wsTransport } from "../src/transport/ws.ts";
import { eventually, sleep, within } from "./support/wait.ts";
import { type FrameSpec, RawWs } from "./raw_ws.ts";
import { openTcp, type Tcp } from "./support/raw_tcp.ts";

const MAX_PAYLOAD = 16384;
const MiB = 1024 * 1024;

/** A listener with an echo session: text is echoed, binary answered `"binary"`. */
interface Harness {
  listener: Listener;
  url(path: string): string;
  conns: WsConnection[];
  infos: UpgradeInfo[];
  /** Codes passed to `onClose`, in order. */
  closes: number[];
}

async function start(transport: Transport, options: Partial<ListenOptions> = {}): Promise<Harness> {
  const h = { conns: [], infos: [], closes: [] } as unknown as Harness;
  h.listener = await transport({
    hostname: "127.0.0.1",
    port: 0,
    maxPayload: MAX_PAYLOAD,
    idleTimeoutMs: 60_000,
    wsPaths: ["/", "/ws"],
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/healthz") return Response.json({ ok: true });
      if (req.method === "POST") return Response.json({ got: await req.json() }, { status: 202 });
      return new Response("Not Found", { status: 404 });
    },
    checkUpgrade: () => null,
    onOpen(conn, info) {
      h.conns.push(conn);
      h.infos.push(info);
      return {
        onText: (text) => conn.send(text),
        onBinary: () => conn.send("binary"),
        onClose: (code) => h.closes.push(code),
      };
    },
    ...options,
  });
  h.url = (path) => `ws://127.0.0.1:${h.listener.port}${path}`;
  return h;
}

/** A WebSocket client plus the promises a test awaits on it (`opened` is false when refused). */
function connect(url: string) {
  const ws = new WebSocket(url);
  const inbox: string[] = [];
  const waiters: ((text: string) => void)[] = [];
  ws.onmessage = (e) =>
    waiters.length ? waiters.shift()!(String(e.data)) : inbox.push(String(e.data));
  ws.onerror = () => {};
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
  const opened = new Promise<boolean>((resolve) => {
    ws.addEventListener("open", () => resolve(true));
    void closed.then(() => resolve(false));
  });
  const next = () =>
    within(
      5000,
      inbox.length ? Promise.resolve(inbox.shift()!) : new Promise<string>((r) => waiters.push(r)),
      "message",
    );
  return { ws, opened, closed, next };
}

type Client = ReturnType<typeof connect>;

/** Opens a client on `path`, runs `body`, then closes the client whatever happened. */
async function withClient(h: Harness, path: string, body: (c: Client) => Promise<void>) {
  const c = connect(h.url(path));
  try {
    assert.equal(await within(5000, c.opened, "open"), true);
    await body(c);
  } finally {
    c.ws.close();
    await within(5000, c.closed, "client close");
  }
}

type Options = Partial<ListenOptions>;
const transports: [string, Transport][] = [["ws", wsTransport], ["native", nativeTransport]];

for (const [name, transport] of transports) {
  const test = (what: string, fn: (h: Harness) => Promise<void>, options?: Options) =>
    Deno.test(`${name} transport ${what}`, async () => {
      const h = await start(transport, options);
      try {
        await fn(h);
      } finally {
        await within(5000, h.listener.close(), "listener close");
      }
    });

  test("answers plain GET and POST with a JSON body through fetch", async (h) => {
    const base = `http://127.0.0.1:${h.listener.port}`;
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { ok: true });
    const post = await fetch(`${base}/notify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_ids: [1, 2], event: { type: "x" } }),
    });
    assert.equal(post.status, 202);
    assert.deepEqual(await post.json(), { got: { user_ids: [1, 2], event: { type: "x" } } });
  });

  for (const path of ["/", "/ws", "/ws?token=1"]) {
    test(`upgrades on ${path} and echoes text`, async (h) => {
      await withClient(h, path, async (c) => {
        c.ws.send("héllo");
        assert.equal(await c.next(), "héllo");
      });
      assert.equal(h.infos[0]?.remoteAddress, "127.0.0.1");
      assert.equal(h.infos[0]?.url.pathname, path.split("?")[0]);
    });
  }

  test("refuses an upgrade on another path with 404", async (h) => {
    await assert.rejects(RawWs.connect(h.listener.port, "/other"), /HTTP\/1\.1 404/);
    const c = connect(h.url("/other"));
    assert.equal(await c.opened, false);
    assert.equal(h.conns.length, 0);
  });

  test("refuses the upgrade with the status of checkUpgrade's Response", async (h) => {
    await assert.rejects(RawWs.connect(h.listener.port, "/"), /HTTP\/1\.1 403/);
    const c = connect(h.url("/ws"));
    assert.equal(await c.opened, false);
    assert.equal(h.conns.length, 0);
  }, { checkUpgrade: () => new Response("Forbidden", { status: 403 }) });

  test("delivers a binary frame to onBinary", async (h) => {
    await withClient(h, "/", async (c) => {
      c.ws.send(new Uint8Array([1, 2, 3]));
      assert.equal(await c.next(), "binary");
    });
  });

  test("calls onClose once with the client's close code", async (h) => {
    const c = connect(h.url("/"));
    assert.equal(await c.opened, true);
    c.ws.close(4000, "bye");
    assert.equal((await within(5000, c.closed, "close")).code, 4000);
    await eventually("onClose", () => h.closes.length > 0);
    await sleep(50);
    assert.deepEqual(h.closes, [4000]);
  });

  test("echoes a message of maxPayload bytes and closes one byte larger with 1009", async (h) => {
    const c = connect(h.url("/"));
    assert.equal(await c.opened, true);
    c.ws.send("a".repeat(MAX_PAYLOAD));
    assert.equal((await c.next()).length, MAX_PAYLOAD);
    c.ws.send("é".repeat(MAX_PAYLOAD / 2) + "a"); // UTF-8 bytes count, not characters
    assert.equal((await within(5000, c.closed, "close")).code, 1009);
    await eventually("onClose", () => h.closes.length > 0);
    assert.deepEqual(h.closes, [1009]);
  });

  // Every length encoding (7-bit, 16-bit, 64-bit), at and around their bounds, in ASCII and in
  // multi-byte UTF-8, all sent in one turn: each arrives whole, as sent, in order.
  const texts = [
    "",
    "a",
    "a".repeat(50),
    "a".repeat(125),
    "a".repeat(126),
    "é".repeat(62) + "a",
    "é".repeat(63),
    "😀".repeat(40),
    "a".repeat(65535),
    "a".repeat(65536),
    "é".repeat(40_000),
    "ok",
  ];
  test(
    "sends texts of every frame length encoding in one turn, each whole and in order",
    async (h) => {
      await withClient(h, "/", async (c) => {
        c.ws.send("burst");
        for (const text of texts) assert.equal(await c.next(), text);
      });
    },
    {
      onOpen: (conn) => ({
        onText: () => {
          for (const text of texts) conn.send(text);
        },
        onBinary: () => {},
        onClose: () => {},
      }),
    },
  );

  test("stopAccepting refuses new connections while an open one still echoes", async (h) => {
    await withClient(h, "/", async (c) => {
      await h.listener.stopAccepting();
      if (name === "ws") { // Deno.serve cannot close its port without closing WebSockets
        await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: h.listener.port }));
      }
      const late = connect(h.url("/"));
      assert.equal(await within(5000, late.opened, "late open"), false);
      c.ws.send("still here");
      assert.equal(await c.next(), "still here");
    });
  });

  test("close ends open connections and resolves", async (h) => {
    const c = connect(h.url("/"));
    assert.equal(await c.opened, true);
    await within(5000, h.listener.close(), "listener close");
    await within(5000, c.closed, "client sees close");
    assert.equal(h.closes.length, 1);
  });

  test("reports bytes queued for a peer that does not read, and close still resolves", async (h) => {
    const raw = await RawWs.connect(h.listener.port, "/");
    try {
      await eventually("open", () => h.conns.length === 1);
      const conn = h.conns[0]!;
      const chunk = "x".repeat(MiB);
      for (let i = 0; i < 32 && conn.bufferedAmount === 0; i++) {
        conn.send(chunk);
        await sleep(5);
      }
      assert.ok(conn.bufferedAmount > 0, `bufferedAmount ${conn.bufferedAmount}`);
      await within(5000, h.listener.close(), "close with a stuck peer");
      assert.equal(h.closes.length, 1);
    } finally {
      raw.close();
    }
  });

  test("drops a peer that answers no ping within idleTimeoutMs", async (h) => {
    const raw = await RawWs.connect(h.listener.port, "/"); // never answers pings
    try {
      await withClient(h, "/", async (c) => { // a real client answers them
        await eventually("idle drop", () => h.closes.length > 0, 4000);
        c.ws.send("alive");
        assert.equal(await c.next(), "alive");
        assert.equal(h.closes.length, 1);
      });
    } finally {
      raw.close();
    }
  }, { idleTimeoutMs: 1000 });
}

/** Opens a raw connection to a fresh `ws` listener, runs `body`, returns the close code seen. */
async function rawCloseCode(body: (raw: RawWs) => Promise<void>) {
  const h = await start(wsTransport);
  const raw = await RawWs.connect(h.listener.port, "/");
  try {
    const code = raw.readClose();
    await body(raw);
    return { code: await within(5000, code, "close frame"), closes: h.closes };
  } finally {
    raw.close();
    await h.listener.close();
  }
}

Deno.test("ws transport cuts a 64 MiB message of 1 KiB fragments off with 1009 after about maxPayload bytes", async () => {
  let sent = 0;
  const { code, closes } = await rawCloseCode(async (raw) => {
    let closed = false;
    void raw.readClose().then(() => closed = true);
    const payload = new Uint8Array(1024).fill(0x61);
    for (let i = 0; sent < 64 * MiB && !closed; i++) {
      const fin = sent + payload.length >= 64 * MiB;
      const frame = { opcode: i === 0 ? 1 : 0, fin, payload };
      if (!await raw.send(frame).then(() => true, () => false)) break;
      sent += payload.length;
      // Past the limit, give the close frame time to arrive before sending more.
      if (sent > MAX_PAYLOAD) await sleep(2);
    }
  });
  assert.equal(code, 1009);
  assert.deepEqual(closes, [1009]);
  assert.ok(sent < MAX_PAYLOAD + 256 * 1024, `sent ${sent} bytes before the close`);
});

const violations: [string, FrameSpec, number][] = [
  ["an unmasked client frame", { opcode: 1, payload: new Uint8Array([104]), mask: false }, 1002],
  ["invalid UTF-8 in a text frame", { opcode: 1, payload: new Uint8Array([0xff, 0xfe]) }, 1007],
];
for (const [what, frame, expected] of violations) {
  Deno.test(`ws transport closes with ${expected} on ${what}`, async () => {
    const { code, closes } = await rawCloseCode((raw) => raw.send(frame));
    assert.equal(code, expected);
    assert.deepEqual(closes, [expected]);
  });
}

Deno.test("ws transport: evictOldest drops the address's oldest connection with no request in progress, answers it 429 and frees its slot first", async () => {
  const LIMIT = 3;
  const held: string[] = []; // one entry per slot taken
  let admissions = 0;
  let requests = 0;
  let finishSlow!: () => void;
  const slow = new Promise<void>((resolve) => finishSlow = resolve);
  const h = await start(wsTransport, {
    headersTimeoutMs: 60_000,
    admitConnection(address, evictOldest) {
      admissions++;
      if (held.length >= LIMIT && !evictOldest()) return null;
      held.push(address);
      return () => held.splice(held.indexOf(address), 1);
    },
    async fetch() {
      requests++;
      await slow;
      return Response.json({ ok: true });
    },
  });
  const port = h.listener.port;
  const sockets: Tcp[] = [];
  const open = async (first = "") => {
    const count = admissions;
    sockets.push(await openTcp(port, first));
    await eventually("accepted", () => admissions > count);
  };
  try {
    await open("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); // 0: a request in progress
    await open(); // 1: silent
    await open("GET /ws HTTP/1.1\r\nHost: x\r\n"); // 2: headers not complete
    await open(); // 3: takes 1's slot
    assert.match(await within(5000, sockets[1]!.ended, "1 dropped"), /^HTTP\/1\.1 429 /);
    await open(); // 4: takes 2's slot
    assert.match(await within(5000, sockets[2]!.ended, "2 dropped"), /^HTTP\/1\.1 429 /);
    assert.deepEqual(sockets.map((s) => s.isEnded()), [false, true, true, false, false]);
    assert.equal(held.length, LIMIT);
    // 3 and 4 send requests too: with every slot's request in progress, nothing is dropped.
    for (const s of sockets.slice(3)) await s.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    await eventually("three requests in progress", () => requests === 3);
    await open(); // 5: refused
    assert.match(await within(5000, sockets[5]!.ended, "5 refused"), /^HTTP\/1\.1 429 /);
    assert.deepEqual(sockets.map((s) => s.isEnded()), [false, true, true, false, false, true]);
    assert.equal(held.length, LIMIT);
  } finally {
    finishSlow();
    for (const s of sockets) s.close();
    await within(5000, h.listener.close(), "listener close");
  }
});
