/** `loadConfig`: documented defaults, aliases and one-line errors. */

import assert from "node:assert/strict";
import { loadConfig } from "../src/config.ts";

Deno.test("defaults match the documented table", () => {
  const c = loadConfig({ AUTH_SECRET: "s" });
  assert.equal(c.host, "0.0.0.0");
  assert.equal(c.port, 8443);
  assert.equal(c.internalHost, "127.0.0.1");
  assert.equal(c.internalPort, 8444);
  assert.equal(c.wsTransport, "ws");
  assert.equal(c.maxFrameBytes, 16384);
  assert.equal(c.tokenTtlSeconds, 86400);
  assert.equal(c.authTimeoutMs, 10000);
  assert.equal(c.maxMessageChars, 1000);
  assert.equal(c.idleTimeoutS, 60);
  assert.equal(c.maxConnectionsPerUser, 10);
  assert.equal(c.maxConnections, 50000);
  assert.equal(c.maxUnauthPerIp, 50);
  assert.equal(c.chatBurst, 20);
  assert.equal(c.chatRatePerS, 5);
  assert.equal(c.typingRatePerS, 5);
  assert.equal(c.frameRatePerS, 50);
  assert.equal(c.sendBufferMaxBytes, 1024 * 1024);
  assert.equal(c.sendBufferShedBytes, 256 * 1024);
  assert.equal(c.dbStatementTimeoutMs, 5000);
  assert.equal(c.shutdownTimeoutS, 30);
  assert.equal(c.allowedOrigins, undefined);
  assert.equal(c.notifySecret, undefined);
  assert.equal(c.presenceGraceS, 5);
  assert.equal(c.typingTimeoutS, 6);
  assert.equal(c.activeCheckIntervalS, 30);
});

Deno.test("WEBSOCKET_PORT is an alias of PORT, and PORT wins when both are set", () => {
  assert.equal(loadConfig({ AUTH_SECRET: "s", WEBSOCKET_PORT: "9000" }).port, 9000);
  assert.equal(loadConfig({ AUTH_SECRET: "s", WEBSOCKET_PORT: "9000", PORT: "9001" }).port, 9001);
});

Deno.test("an unusable secret or a bad value is a one-line RangeError naming the variable", () => {
  for (const env of [{}, { AUTH_SECRET: "" }, { AUTH_SECRET: "default_secret" }]) {
    assert.throws(
      () => loadConfig(env),
      (e: Error) => e instanceof RangeError && /AUTH_SECRET/.test(e.message),
    );
  }
  const bad: Record<string, string> = {
    PORT: "70000",
    MAX_FRAME_BYTES: "1e4",
    WS_TRANSPORT: "uws",
    DEMO_PAGE: "maybe",
    CHAT_RATE_PER_S: "-1",
    RELATION_CACHE_MS: "6000",
    TLS_CERT_FILE: "/only/cert.pem",
    PRESENCE_GRACE_S: "-1",
    TYPING_TIMEOUT_S: "0",
    ACTIVE_CHECK_INTERVAL_S: "61",
  };
  for (const [name, value] of Object.entries(bad)) {
    assert.throws(
      () => loadConfig({ AUTH_SECRET: "s", [name]: value }),
      (e: Error) =>
        e instanceof RangeError && e.message.includes(name) && !e.message.includes("\n"),
      name,
    );
  }
});

Deno.test("allowed origins are compared case-insensitively without a trailing slash", () => {
  const c = loadConfig({
    AUTH_SECRET: "s",
    ALLOWED_ORIGINS: "https://Game.example.com/, https://b.example",
  });
  assert.deepEqual([...c.allowedOrigins!], ["https://game.example.com", "https://b.example"]);
});
