/**
 * @module config
 * Configuration from environment variables: one pure function, every default
 * here and in the README's table, a one-line `RangeError` for a bad value.
 */

import type { LogLevel } from "./log.ts";

export type WsTransportName = "ws" | "native";

export interface Config {
  host: string;
  port: number;
  internalHost: string;
  internalPort: number;
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  /** Normalised origins; `undefined` allows every origin. */
  allowedOrigins: ReadonlySet<string> | undefined;
  wsTransport: WsTransportName;
  maxFrameBytes: number;
  authSecret: string;
  tokenTtlSeconds: number;
  authTimeoutMs: number;
  /** Time a TCP connection has to complete its request headers (the `ws` transport). */
  headersTimeoutMs: number;
  maxAuthFailures: number;
  maxMessageChars: number;
  idleTimeoutS: number;
  notifySecret: string | undefined;
  /** Bearer of the status page's data; `NOTIFY_SECRET` when unset. */
  statusSecret: string | undefined;
  /** Bearer a scrape of `/metrics` must send; open when unset. */
  metricsSecret: string | undefined;
  databaseUrl: string;
  dbPoolSize: number;
  dbStatementTimeoutMs: number;
  /** How stale a friendship or block answer may be (at most 5000). */
  relationCacheMs: number;
  redisUrl: string | undefined;
  /** `host:port` seeds of a Redis Cluster (instead of `redisUrl`). */
  redisClusterNodes: readonly string[] | undefined;
  /** Prefix of every Redis key and channel of this cluster. */
  redisKeyPrefix: string;
  /** How long a node counts as live after its last heartbeat (it beats every third of it). */
  presenceTtlS: number;
  /** How long a user with no connection left still counts as online (no flicker on a blip). */
  presenceGraceS: number;
  /** A typing indicator not renewed within this is reported stopped. */
  typingTimeoutS: number;
  /** How often this node asks the database which of its users were deactivated. */
  activeCheckIntervalS: number;
  maxConnections: number;
  maxConnectionsPerUser: number;
  maxUnauthPerIp: number;
  /** Sign-ins one user may start per minute on one node (a bucket of a minute's worth). */
  loginRatePerUserPerMin: number;
  /** Sign-ins one client address may start per minute on one node (a bucket of a minute's worth). */
  loginRatePerIpPerMin: number;
  /**
   * Sign-ins this node admits per second, everyone together (0: no limit); past it a sign-in is
   * refused with `retry_after_ms`, its place in the node's schedule (session/rate_limit.ts).
   */
  loginRatePerS: number;
  trustedProxies: ReadonlySet<string>;
  chatBurst: number;
  chatRatePerS: number;
  typingRatePerS: number;
  frameRatePerS: number;
  /** Frames one connection may have received and not yet handled; more are refused at once. */
  maxQueuedFrames: number;
  /** Frames reading or writing one user's mailbox handled at once on this node. */
  maxDbFramesPerUser: number;
  /** Such frames of one user waiting beyond those; more are refused at once. */
  maxQueuedDbFramesPerUser: number;
  sendBufferMaxBytes: number;
  sendBufferShedBytes: number;
  /**
   * Largest `sync_result` / `history_result` frame: a page holds fewer than
   * `limit` messages rather than pass it (at most `sendBufferMaxBytes`).
   */
  pageMaxBytes: number;
  /**
   * Bytes of `sync`/`history` pages one user is sent a second on this node, on average (four
   * seconds of it at once); past that their next page waits.
   */
  catchUpBytesPerS: number;
  /** How long after `sent_at` a message may be edited, in seconds; 0 turns editing off (v1.2). */
  editWindowS: number;
  shutdownTimeoutS: number;
  logLevel: LogLevel;
  demoPage: boolean;
  /** `auto`: apply migrations at start; `off`: require a current schema; `only`: apply, then exit. */
  migrate: MigrateMode;
  /** Where every new message and edit is checked before it is stored; unset: no hook. */
  moderationUrl: string | undefined;
  /** The key of the hook calls' signature (required with `moderationUrl`). */
  moderationSecret: string | undefined;
  /** How long one hook call may take, answer included. */
  moderationTimeoutMs: number;
  /** When the hook fails: `open` stores the message unchecked, `closed` refuses it `unavailable`. */
  moderationFail: "open" | "closed";
  /** Hook calls out at once on this node; beyond them the failure rule applies at once. */
  moderationMaxInFlight: number;
  /** Where the events webhook posts its batches; no events are made when unset. */
  eventsUrl: string | undefined;
  /** HMAC key of the webhook's `X-Chat-Signature` (set whenever `eventsUrl` is). */
  eventsSecret: string | undefined;
  /** Most events in one webhook batch. */
  eventsBatchMax: number;
  /** Longest an event waits for companions before its batch is sent. */
  eventsBatchMs: number;
  /** How long a failing batch is retried (from its first attempt) before its events are dropped. */
  eventsRetryForS: number;
  /** A message no device reported `delivered` within this becomes `message.unseen`. */
  unseenDelayS: number;
}

export type MigrateMode = "auto" | "off" | "only";

export const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";

/**
 * The secret `deno task dev` signs tokens with when `AUTH_SECRET` is unset. It is public (it is
 * right here), so a token signed with it proves nothing: only `deno task dev` accepts it
 * (`LoadOptions.allowDevOnlySecret`); `deno task start` refuses it like any placeholder.
 */
export const DEV_ONLY_SECRET = "geobeasts-chat-dev-only-secret-never-use-in-production";

/**
 * The shortest `AUTH_SECRET` accepted, in bytes: below 16 bytes (128 bits) an HMAC-SHA256 key is
 * within reach of a guessing attack on one captured token, offline.
 */
export const MIN_SECRET_BYTES = 16;
/** Below this a warning at start: 32 bytes, SHA-256's output, is the key length RFC 2104 advises. */
export const RECOMMENDED_SECRET_BYTES = 32;

/**
 * Secrets that must never sign tokens, compared without case or surrounding space: the old
 * server's shipped default, and the placeholders of examples (this README's `change-me` once).
 */
const PLACEHOLDER_SECRETS = new Set([
  "default_secret",
  "change-me",
  "changeme",
  "change_me",
  "secret",
  "your-secret",
  "your_secret",
  "replace-me",
  "...",
]);

const HOW_TO_GET_ONE =
  `at least ${MIN_SECRET_BYTES} bytes, better ${RECOMMENDED_SECRET_BYTES} random ones (e.g. \`openssl rand -hex 32\`)`;

/** What a caller of `loadConfig` may allow beyond the environment. */
export interface LoadOptions {
  /** `deno task dev` only: accept `DEV_ONLY_SECRET`, which every other start refuses. */
  allowDevOnlySecret?: boolean;
}

/**
 * Why `secret` cannot sign tokens, as the one-line message start-up fails with; undefined when
 * it can. The secret itself is never part of the message.
 */
function unusableSecret(secret: string, options: LoadOptions): string | undefined {
  if (secret === DEV_ONLY_SECRET) {
    if (options.allowDevOnlySecret) return undefined;
    return "AUTH_SECRET is the public dev-only secret of `deno task dev` (anyone can sign tokens " +
      `with it): set it to the game backend's token secret, ${HOW_TO_GET_ONE}`;
  }
  if (secret.trim() === "") {
    return `AUTH_SECRET is unset or empty: set it to the game backend's token secret, ${HOW_TO_GET_ONE}`;
  }
  if (PLACEHOLDER_SECRETS.has(secret.trim().toLowerCase())) {
    return `AUTH_SECRET is a well-known placeholder ('${secret.trim()}'): set it to the game ` +
      `backend's token secret, ${HOW_TO_GET_ONE}`;
  }
  const bytes = secretBytes(secret);
  if (bytes < MIN_SECRET_BYTES) {
    return `AUTH_SECRET is ${bytes} byte${
      bytes === 1 ? "" : "s"
    } long, too short for HMAC-SHA256 ` +
      `to mean anything: it must be ${HOW_TO_GET_ONE}`;
  }
  return undefined;
}

/** The length of `secret` as the HMAC key it becomes (UTF-8 bytes). */
function secretBytes(secret: string): number {
  return new TextEncoder().encode(secret).length;
}

/**
 * A usable but weak `AUTH_SECRET` (under `RECOMMENDED_SECRET_BYTES`): the warning to log at
 * start, without the secret; undefined for a strong one, or when no tokens are signed.
 */
export function secretWarning(config: Config): string | undefined {
  const bytes = secretBytes(config.authSecret);
  if (config.migrate === "only" || bytes >= RECOMMENDED_SECRET_BYTES) return undefined;
  return `AUTH_SECRET is ${bytes} bytes long; ${RECOMMENDED_SECRET_BYTES} random bytes are ` +
    "recommended (e.g. `openssl rand -hex 32`)";
}

/** Reads the configuration; throws `RangeError` with a one-line message for a bad value. */
export function loadConfig(
  env: Record<string, string | undefined>,
  options: LoadOptions = {},
): Config {
  const read = reader(env);
  const authSecret = env.AUTH_SECRET ?? "";
  const migrate = read.oneOf("MIGRATE", ["auto", "off", "only"] as const, "auto");
  // MIGRATE=only signs no tokens: it needs the database and nothing else.
  const unusable = migrate === "only" ? undefined : unusableSecret(authSecret, options);
  if (unusable !== undefined) throw new RangeError(unusable);
  const portAlias = env.PORT === undefined && env.WEBSOCKET_PORT !== undefined;
  const tlsCertFile = nonEmpty(env.TLS_CERT_FILE);
  const tlsKeyFile = nonEmpty(env.TLS_KEY_FILE);
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    throw new RangeError("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
  }
  const config: Config = {
    host: env.HOST || "0.0.0.0",
    port: read.int(portAlias ? "WEBSOCKET_PORT" : "PORT", 8443, 0, 65535),
    internalHost: env.INTERNAL_HOST || "127.0.0.1",
    internalPort: read.int("INTERNAL_PORT", 8444, 0, 65535),
    tlsCertFile,
    tlsKeyFile,
    allowedOrigins: parseOrigins(env.ALLOWED_ORIGINS),
    wsTransport: read.oneOf("WS_TRANSPORT", ["ws", "native"] as const, "ws"),
    maxFrameBytes: read.int("MAX_FRAME_BYTES", 16384, 256, 16 * 1024 * 1024),
    authSecret,
    tokenTtlSeconds: read.int("TOKEN_TTL_SECONDS", 86400, 1, 365 * 86400),
    authTimeoutMs: read.int("AUTH_TIMEOUT_MS", 10000, 100, 600_000),
    headersTimeoutMs: read.int("HEADERS_TIMEOUT_MS", 10000, 100, 60_000),
    maxAuthFailures: read.int("MAX_AUTH_FAILURES", 5, 1, 100),
    maxMessageChars: read.int("MAX_MESSAGE_CHARS", 1000, 1, 100_000),
    idleTimeoutS: read.int("IDLE_TIMEOUT_S", 60, 1, 3600),
    notifySecret: bearerSecret(env, "NOTIFY_SECRET"),
    statusSecret: bearerSecret(env, "STATUS_SECRET") ?? bearerSecret(env, "NOTIFY_SECRET"),
    metricsSecret: bearerSecret(env, "METRICS_SECRET"),
    databaseUrl: env.DATABASE_URL || DEFAULT_DATABASE_URL,
    dbPoolSize: read.int("DB_POOL_SIZE", 10, 1, 500),
    dbStatementTimeoutMs: read.int("DB_STATEMENT_TIMEOUT_MS", 5000, 100, 120_000),
    relationCacheMs: read.int("RELATION_CACHE_MS", 2000, 0, 5000),
    redisUrl: nonEmpty(env.REDIS_URL),
    redisClusterNodes: clusterNodes(env.REDIS_CLUSTER_NODES),
    redisKeyPrefix: env.REDIS_KEY_PREFIX || "geobeasts:chat:",
    presenceTtlS: read.int("PRESENCE_TTL_S", 10, 1, 3600),
    presenceGraceS: read.num("PRESENCE_GRACE_S", 5, 0, 3600),
    typingTimeoutS: read.num("TYPING_TIMEOUT_S", 6, 0.1, 3600),
    activeCheckIntervalS: read.num("ACTIVE_CHECK_INTERVAL_S", 30, 0.1, 60),
    maxConnections: read.int("MAX_CONNECTIONS", 50000, 1, 10_000_000),
    maxConnectionsPerUser: read.int("MAX_CONNECTIONS_PER_USER", 10, 1, 10_000),
    maxUnauthPerIp: read.int("MAX_UNAUTH_PER_IP", 50, 1, 10_000_000),
    loginRatePerUserPerMin: read.int("LOGIN_RATE_PER_USER_PER_MIN", 30, 1, 1_000_000),
    loginRatePerIpPerMin: read.int("LOGIN_RATE_PER_IP_PER_MIN", 300, 1, 10_000_000),
    loginRatePerS: read.int("LOGIN_RATE_PER_S", 1000, 0, 1_000_000),
    trustedProxies: new Set(list(env.TRUSTED_PROXIES)),
    chatBurst: read.int("CHAT_RATE_BURST", 20, 1, 1_000_000),
    chatRatePerS: read.num("CHAT_RATE_PER_S", 5, 0.01, 1_000_000),
    typingRatePerS: read.num("TYPING_RATE_PER_S", 5, 0.01, 1_000_000),
    frameRatePerS: read.num("FRAME_RATE_PER_S", 50, 1, 1_000_000),
    maxQueuedFrames: read.int("MAX_QUEUED_FRAMES", 64, 1, 100_000),
    maxDbFramesPerUser: read.int("MAX_DB_FRAMES_PER_USER", 2, 1, 500),
    maxQueuedDbFramesPerUser: read.int("MAX_QUEUED_DB_FRAMES_PER_USER", 4, 0, 100_000),
    sendBufferMaxBytes: read.int("SEND_BUFFER_MAX_BYTES", 1024 * 1024, 1024, 1024 ** 3),
    sendBufferShedBytes: read.int("SEND_BUFFER_SHED_BYTES", 256 * 1024, 512, 1024 ** 3),
    pageMaxBytes: read.int("PAGE_MAX_BYTES", 256 * 1024, 1024, 1024 ** 3),
    catchUpBytesPerS: read.int("CATCH_UP_BYTES_PER_S", 1024 * 1024, 1024, 1024 ** 4),
    editWindowS: read.int("EDIT_WINDOW_S", 900, 0, 365 * 24 * 3600),
    shutdownTimeoutS: read.int("SHUTDOWN_TIMEOUT_S", 30, 1, 3600),
    logLevel: read.oneOf("LOG_LEVEL", ["debug", "info", "warn", "error"] as const, "info"),
    demoPage: read.bool("DEMO_PAGE", false),
    migrate,
    moderationUrl: webhookUrl(env, "MODERATION_URL"),
    moderationSecret: nonEmpty(env.MODERATION_SECRET),
    moderationTimeoutMs: read.int("MODERATION_TIMEOUT_MS", 1500, 1, 5000),
    moderationFail: read.oneOf("MODERATION_FAIL", ["open", "closed"] as const, "open"),
    moderationMaxInFlight: read.int("MODERATION_MAX_IN_FLIGHT", 256, 1, 100_000),
    eventsUrl: webhookUrl(env, "EVENTS_URL"),
    eventsSecret: nonEmpty(env.EVENTS_SECRET),
    eventsBatchMax: read.int("EVENTS_BATCH_MAX", 50, 1, 1000),
    eventsBatchMs: read.int("EVENTS_BATCH_MS", 500, 10, 60_000),
    eventsRetryForS: read.int("EVENTS_RETRY_FOR_S", 600, 1, 7 * 86400),
    unseenDelayS: read.num("UNSEEN_DELAY_S", 15, 0.1, 86400),
  };
  if (config.moderationUrl !== undefined && config.moderationSecret === undefined) {
    throw new RangeError(
      "MODERATION_SECRET must be set with MODERATION_URL: the hook checks each call's signature with it (e.g. `openssl rand -hex 32`)",
    );
  }
  if (config.eventsUrl !== undefined && config.eventsSecret === undefined) {
    throw new RangeError(
      "EVENTS_SECRET must be set when EVENTS_URL is: the receiver checks each batch's signature with it",
    );
  }
  if (config.redisUrl !== undefined && config.redisClusterNodes !== undefined) {
    throw new RangeError(
      "REDIS_URL and REDIS_CLUSTER_NODES are both set: set REDIS_URL for one Redis or REDIS_CLUSTER_NODES for a Redis Cluster",
    );
  }
  if (/[{}]/.test(config.redisKeyPrefix)) {
    throw new RangeError(
      `REDIS_KEY_PREFIX must not contain '{' or '}' (they mark Redis Cluster hash tags), got '${config.redisKeyPrefix}'`,
    );
  }
  if (config.maxDbFramesPerUser > config.dbPoolSize) {
    throw new RangeError("MAX_DB_FRAMES_PER_USER must not exceed DB_POOL_SIZE");
  }
  if (config.sendBufferShedBytes > config.sendBufferMaxBytes) {
    throw new RangeError("SEND_BUFFER_SHED_BYTES must not exceed SEND_BUFFER_MAX_BYTES");
  }
  if (config.pageMaxBytes > config.sendBufferMaxBytes) {
    throw new RangeError("PAGE_MAX_BYTES must not exceed SEND_BUFFER_MAX_BYTES");
  }
  return config;
}

function reader(env: Record<string, string | undefined>) {
  const raw = (name: string) => nonEmpty(env[name]?.trim());
  return {
    int(name: string, fallback: number, min: number, max: number): number {
      const value = raw(name);
      if (value === undefined) return fallback;
      if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
        throw new RangeError(
          `${name} must be a whole number from ${min} to ${max}, got '${value}'`,
        );
      }
      return Number(value);
    },
    num(name: string, fallback: number, min: number, max: number): number {
      const value = raw(name);
      if (value === undefined) return fallback;
      const n = Number(value);
      if (!/^\d+(\.\d+)?$/.test(value) || n < min || n > max) {
        throw new RangeError(`${name} must be a number from ${min} to ${max}, got '${value}'`);
      }
      return n;
    },
    bool(name: string, fallback: boolean): boolean {
      const value = raw(name)?.toLowerCase();
      if (value === undefined) return fallback;
      if (value === "true" || value === "1") return true;
      if (value === "false" || value === "0") return false;
      throw new RangeError(`${name} must be true or false, got '${value}'`);
    },
    oneOf<T extends string>(name: string, options: readonly T[], fallback: T): T {
      const value = raw(name);
      if (value === undefined) return fallback;
      const found = options.find((option) => option === value);
      if (found === undefined) {
        throw new RangeError(`${name} must be one of ${options.join(", ")}, got '${value}'`);
      }
      return found;
    },
  };
}

/**
 * What `Authorization: Bearer <token>` can carry (RFC 6750's b64token, the syntax the
 * internal routes accept): a secret with other characters could never be sent.
 */
const BEARER_TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

function bearerSecret(env: Record<string, string | undefined>, name: string): string | undefined {
  const value = nonEmpty(env[name]);
  if (value !== undefined && !BEARER_TOKEN.test(value)) {
    throw new RangeError(
      `${name} must be a bearer token: letters, digits and -._~+/ with optional trailing =`,
    );
  }
  return value;
}

/** An absolute http(s) URL, or undefined when unset. */
function webhookUrl(env: Record<string, string | undefined>, name: string): string | undefined {
  const value = nonEmpty(env[name]?.trim());
  if (value === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    // The value is not echoed: a URL may carry credentials.
    throw new RangeError(`${name} must be an absolute http:// or https:// URL`);
  }
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function list(value: string | undefined): string[] {
  return (value ?? "").split(",").map((item) => item.trim()).filter((item) => item !== "");
}

/** Comma-separated `host:port` seeds; undefined when none are set. */
function clusterNodes(value: string | undefined): string[] | undefined {
  const nodes = list(value);
  for (const node of nodes) {
    const port = Number(/^(?:[^\s:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(node)?.[1]);
    if (!(port >= 1 && port <= 65535)) {
      throw new RangeError(`REDIS_CLUSTER_NODES must list host:port pairs, got '${node}'`);
    }
  }
  return nodes.length === 0 ? undefined : nodes;
}

/** The form an `Origin` header is compared in: lower case, no trailing slash. */
export function normaliseOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, "");
}

function parseOrigins(value: string | undefined): ReadonlySet<string> | undefined {
  const origins = list(value);
  return origins.length === 0 ? undefined : new Set(origins.map(normaliseOrigin));
}
