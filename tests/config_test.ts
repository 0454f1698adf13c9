/** `loadConfig`: documented defaults, aliases and one-line errors. */

import assert from "node:assert/strict";
import { type Config, DEV_ONLY_SECRET, loadConfig, secretWarning } from "../src/config.ts";

const README = new URL("../README.md", import.meta.url);
/** A secret the checks accept without a warning (32 bytes). */
const SECRET = "0123456789abcdef0123456789abcdef";
/** The least a server starts with: every other setting takes its default. */
const MINIMAL = { AUTH_SECRET: SECRET };
/** Settings whose names are not their variable's in camel case. */
const FIELD_OF: Record<string, keyof Config> = { CHAT_RATE_BURST: "chatBurst" };

/** A default as the table gives it: a value, `unset`, or none at all (required). */
type Documented = { value: string } | "unset" | "required";

/** The variables of README.md's "Configuration" table, each with its documented default. */
async function documentedDefaults(): Promise<Map<string, Documented>> {
  const readme = await Deno.readTextFile(README);
  const section = readme.split(/^## /m).find((part) => part.startsWith("Configuration\n"));
  assert.ok(section, "README.md has a Configuration section");
  const defaults = new Map<string, Documented>();
  for (const row of section.split("\n").filter((line) => line.startsWith("| `"))) {
    const [variables, fallback] = row.split("|").slice(1, 3).map((cell) => cell.trim()) as [
      string,
      string,
    ];
    const names = [...variables.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]!);
    const values = [...fallback.matchAll(/`([^`]*)`/g)].map((m) => m[1]!);
    const none: Documented | undefined = fallback.startsWith("unset")
      ? "unset"
      : fallback.includes("(required)")
      ? "required"
      : undefined;
    assert.ok(
      none !== undefined || values.length === names.length,
      `one default per variable: ${row}`,
    );
    names.forEach((name, i) => defaults.set(name, none ?? { value: values[i]! }));
  }
  assert.ok(defaults.size > 30, `only ${defaults.size} variables read from the table`);
  return defaults;
}

const camelCase = (name: string) =>
  name.toLowerCase().replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());

Deno.test("the README's configuration table lists every setting, each with the default loadConfig uses", async () => {
  const config = loadConfig(MINIMAL);
  const documented = new Set<string>();
  for (const [name, fallback] of await documentedDefaults()) {
    const field = FIELD_OF[name] ?? camelCase(name);
    assert.ok(field in config, `${name} is in the table but sets nothing (no ${field})`);
    documented.add(field);
    const actual = config[field as keyof Config];
    if (fallback === "required") {
      const without = Object.fromEntries(Object.entries(MINIMAL).filter(([key]) => key !== name));
      assert.throws(() => loadConfig(without), new RegExp(name), `${name} is required`);
    } else if (fallback === "unset") {
      const none = actual === undefined || (actual instanceof Set && actual.size === 0);
      assert.ok(none, `${name} is documented unset, but defaults to ${String(actual)}`);
    } else {
      assert.equal(String(actual), fallback.value, `${name}'s default`);
      assert.deepEqual(
        loadConfig({ ...MINIMAL, [name]: fallback.value }),
        config,
        `${name}=${fallback.value}, its documented default, changes the configuration`,
      );
    }
  }
  const missing = Object.keys(config).filter((field) => !documented.has(field));
  assert.deepEqual(missing, [], "settings the table does not list");
});

Deno.test("WEBSOCKET_PORT is an alias of PORT, and PORT wins when both are set", () => {
  assert.equal(loadConfig({ AUTH_SECRET: SECRET, WEBSOCKET_PORT: "9000" }).port, 9000);
  assert.equal(
    loadConfig({ AUTH_SECRET: SECRET, WEBSOCKET_PORT: "9000", PORT: "9001" }).port,
    9001,
  );
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
    HEADERS_TIMEOUT_MS: "61000",
    TLS_CERT_FILE: "/only/cert.pem",
    PRESENCE_GRACE_S: "-1",
    TYPING_TIMEOUT_S: "0",
    ACTIVE_CHECK_INTERVAL_S: "61",
    LOGIN_RATE_PER_USER_PER_MIN: "0",
    LOGIN_RATE_PER_IP_PER_MIN: "many",
    LOGIN_RATE_PER_S: "-5",
    PAGE_MAX_BYTES: "2097152", // more than SEND_BUFFER_MAX_BYTES
    MAX_QUEUED_FRAMES: "0",
    MAX_DB_FRAMES_PER_USER: "11", // above DB_POOL_SIZE (10)
    MAX_QUEUED_DB_FRAMES_PER_USER: "-1",
    REDIS_CLUSTER_NODES: "10.0.0.1:7000,10.0.0.2",
    REDIS_KEY_PREFIX: "chat:{a}:",
    NOTIFY_SECRET: "two words",
    STATUS_SECRET: "semi;colon",
    MODERATION_URL: "ftp://hook.example",
    MODERATION_TIMEOUT_MS: "5001",
    MODERATION_FAIL: "maybe",
    MODERATION_MAX_IN_FLIGHT: "0",
  };
  for (const [name, value] of Object.entries(bad)) {
    assert.throws(
      () => loadConfig({ AUTH_SECRET: SECRET, [name]: value }),
      (e: Error) =>
        e instanceof RangeError && e.message.includes(name) && !e.message.includes("\n"),
      name,
    );
  }
});

Deno.test("REDIS_CLUSTER_NODES lists the cluster's seeds, and with REDIS_URL it is a one-line error", () => {
  const c = loadConfig({
    AUTH_SECRET: SECRET,
    REDIS_CLUSTER_NODES: " 10.0.0.1:7000, redis-2:7001 ",
  });
  assert.deepEqual(c.redisClusterNodes, ["10.0.0.1:7000", "redis-2:7001"]);
  assert.equal(c.redisUrl, undefined);
  assert.throws(
    () =>
      loadConfig({
        AUTH_SECRET: SECRET,
        REDIS_URL: "redis://127.0.0.1:6379",
        REDIS_CLUSTER_NODES: "10.0.0.1:7000",
      }),
    (e: Error) =>
      e instanceof RangeError && e.message.includes("REDIS_URL") &&
      e.message.includes("REDIS_CLUSTER_NODES") && !e.message.includes("\n"),
  );
});

Deno.test("MODERATION_URL needs MODERATION_SECRET: without it start-up fails in one line naming both", () => {
  assert.throws(
    () => loadConfig({ AUTH_SECRET: SECRET, MODERATION_URL: "https://hook.example/check" }),
    (e: Error) =>
      e instanceof RangeError && e.message.includes("MODERATION_SECRET") &&
      e.message.includes("MODERATION_URL") && !e.message.includes("\n"),
  );
  const c = loadConfig({
    AUTH_SECRET: SECRET,
    MODERATION_URL: "https://hook.example/check",
    MODERATION_SECRET: "s3cret-for-the-hook",
    MODERATION_FAIL: "closed",
  });
  assert.equal(c.moderationUrl, "https://hook.example/check");
  assert.equal(c.moderationFail, "closed");
});

Deno.test("allowed origins are compared case-insensitively without a trailing slash", () => {
  const c = loadConfig({
    AUTH_SECRET: SECRET,
    ALLOWED_ORIGINS: "https://Game.example.com/, https://b.example",
  });
  assert.deepEqual([...c.allowedOrigins!], ["https://game.example.com", "https://b.example"]);
});

Deno.test("AUTH_SECRET: placeholders, the dev-only secret and secrets under 16 bytes are refused in one line saying how long it must be", () => {
  for (
    const secret of [
      "x",
      "change-me",
      " Change-Me ",
      "default_secret",
      "fifteen-bytes!!",
      "ü".repeat(7), // 14 bytes in UTF-8
      DEV_ONLY_SECRET,
    ]
  ) {
    assert.throws(
      () => loadConfig({ AUTH_SECRET: secret }),
      (e: Error) =>
        e instanceof RangeError && /^AUTH_SECRET /.test(e.message) &&
        e.message.includes("at least 16 bytes") && !e.message.includes("\n") &&
        (secret.length < 3 || !e.message.includes(secret) || /placeholder/.test(e.message)),
      JSON.stringify(secret),
    );
  }
  // `deno task dev` keeps its dev-only secret; MIGRATE=only signs nothing and needs none.
  assert.equal(
    loadConfig({ AUTH_SECRET: DEV_ONLY_SECRET }, { allowDevOnlySecret: true }).authSecret,
    DEV_ONLY_SECRET,
  );
  assert.equal(loadConfig({ AUTH_SECRET: "x", MIGRATE: "only" }).migrate, "only");
});

Deno.test("AUTH_SECRET of 16 to 31 bytes is accepted with a warning; 32 bytes or more without", () => {
  const sixteen = loadConfig({ AUTH_SECRET: "sixteen-bytes-ok" });
  const warning = secretWarning(sixteen);
  assert.match(warning ?? "", /AUTH_SECRET is 16 bytes long; 32 random bytes are recommended/);
  assert.ok(!warning!.includes("sixteen-bytes-ok"), "the warning does not show the secret");
  assert.equal(secretWarning(loadConfig({ AUTH_SECRET: "a".repeat(31) }))?.includes("31"), true);
  assert.equal(secretWarning(loadConfig({ AUTH_SECRET: SECRET })), undefined);
  assert.equal(
    secretWarning(loadConfig({ AUTH_SECRET: DEV_ONLY_SECRET }, { allowDevOnlySecret: true })),
    undefined,
  );
});

Deno.test("EVENTS_URL needs EVENTS_SECRET and an http(s) URL, each a one-line error that does not echo the URL", () => {
  assert.throws(
    () => loadConfig({ ...MINIMAL, EVENTS_URL: "https://push.example/events" }),
    /^RangeError: EVENTS_SECRET must be set when EVENTS_URL is/,
  );
  for (const bad of ["push.example/events", "ftp://user:pw@push.example/"]) {
    assert.throws(
      () => loadConfig({ ...MINIMAL, EVENTS_URL: bad, EVENTS_SECRET: "s" }),
      (err: Error) =>
        err instanceof RangeError && /EVENTS_URL must be an absolute http/.test(err.message) &&
        !err.message.includes("pw") && !err.message.includes("\n"),
    );
  }
  const config = loadConfig({
    ...MINIMAL,
    EVENTS_URL: "https://push.example/events",
    EVENTS_SECRET: "s",
  });
  assert.equal(config.eventsUrl, "https://push.example/events");
  assert.equal(config.eventsSecret, "s");
});
