/**
 * @module targets
 * The systems under test as child processes: the real server
 * (`deno run main.ts`, its benchmark database, rate limits raised through
 * env), the bare relay on our transport (`bench/relay.ts`), the bare Node 20
 * + `ws` relay (`bench/node_relay.mjs`), and two real server nodes on one
 * Redis (`cluster`) or on a Redis Cluster of 3 primaries (`redis-cluster`). Every process
 * binds port 0 on 127.0.0.1; the port is
 * read from its `listening` line. Each is pinned to the target CPUs when the
 * bench pins (both cluster nodes share them, so the cluster gets the same
 * CPU as one node).
 */

import { type Child, spawnDeno, spawnProcess, stopChild, waitForLogLine } from "./proc.ts";

export type TargetKind = "server" | "relay" | "node" | "cluster" | "redis-cluster";

export interface Target {
  kind: TargetKind;
  /** One process, or one per node of the cluster. */
  children: Child[];
  /** WebSocket URL of each process; pair user `id` uses `urls[(id - 1) % urls.length]`. */
  urls: string[];
  /** Internal listener port of each server process (`/metrics`); empty for the relay. */
  internalPorts: number[];
  /** The DevTools WebSocket of the first process when started with `inspect`. */
  inspectorUrl?: string | undefined;
}

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const RELAY = new URL("../relay.ts", import.meta.url).pathname;
const NODE_RELAY = new URL("../node_relay.mjs", import.meta.url).pathname;
const TRACED = new URL("../traced_server.ts", import.meta.url).pathname;

/**
 * Settings a developer's or CI's environment may carry, reset to their defaults (an empty value
 * means the default), so every run measures the same server.
 */
export function carriedSettingsReset(): Record<string, string> {
  return Object.fromEntries(
    [
      "REDIS_URL",
      "REDIS_CLUSTER_NODES",
      "REDIS_KEY_PREFIX",
      "DB_POOL_SIZE",
      "DB_STATEMENT_TIMEOUT_MS",
      "RELATION_CACHE_MS",
      "SEND_BUFFER_MAX_BYTES",
      "SEND_BUFFER_SHED_BYTES",
      "MAX_FRAME_BYTES",
      "ALLOWED_ORIGINS",
      "TRUSTED_PROXIES",
      "TLS_CERT_FILE",
      "TLS_KEY_FILE",
      "NOTIFY_SECRET",
      "MAX_DB_FRAMES_PER_USER",
      "MAX_QUEUED_DB_FRAMES_PER_USER",
      // Only the `hook` scenario's runs with the hook set these.
      "MODERATION_URL",
      "MODERATION_SECRET",
      "MODERATION_TIMEOUT_MS",
      "MODERATION_FAIL",
      "MODERATION_MAX_IN_FLIGHT",
    ].map((name) => [name, ""]),
  );
}

/**
 * Limits raised for the benchmark, and only through env: the load is
 * deliberately far above one person's typing, from one address. Everything
 * else (pool size, cache age, buffers, log level) keeps its default.
 */
export function serverEnv(secret: string, databaseUrl: string): Record<string, string> {
  const defaults = carriedSettingsReset();
  return {
    ...defaults,
    // The `listening` line (info) is how the bench finds the ports.
    LOG_LEVEL: "info",
    WS_TRANSPORT: "ws",
    AUTH_SECRET: secret,
    HOST: "127.0.0.1",
    PORT: "0",
    INTERNAL_PORT: "0",
    DATABASE_URL: databaseUrl,
    CHAT_RATE_BURST: "1000000",
    CHAT_RATE_PER_S: "1000000",
    FRAME_RATE_PER_S: "1000000",
    // the largest the setting allows (config.ts): the generator sends at full speed
    MAX_QUEUED_FRAMES: "100000",
    TYPING_RATE_PER_S: "1000000",
    MAX_UNAUTH_PER_IP: "1000000",
    // The bench signs thousands of users in from one address within seconds.
    LOGIN_RATE_PER_IP_PER_MIN: "10000000",
    LOGIN_RATE_PER_USER_PER_MIN: "1000000",
    // Off: the capacity scenario measures how fast the server can sign users in (the storm
    // scenario sets it to what it measures).
    LOGIN_RATE_PER_S: "0",
    MAX_CONNECTIONS: "1000000",
    MAX_CONNECTIONS_PER_USER: "10",
  };
}

export interface StartOptions {
  secret: string;
  databaseUrl: string;
  logDir: string;
  /** For `cluster`: the Redis both nodes share, and this run's key prefix. */
  redis?: { url: string; keyPrefix: string } | undefined;
  /** For `redis-cluster`: the Redis Cluster's `host:port` seeds both nodes share. */
  redisCluster?: { seeds: string; keyPrefix: string } | undefined;
  /** Runs the target with `--cpu-prof` writing into this directory. */
  cpuProfDir?: string | undefined;
  /** Runs the target with `--inspect=127.0.0.1:0` (to force a GC or profile from outside). */
  inspect?: boolean | undefined;
  /** CPU list every process of the target is pinned to (`taskset -c`). */
  cpus?: string | undefined;
  /** For `server`: run `traced_server.ts`, writing its per-message trace to this file. */
  trace?: string | undefined;
  /** For `server`: settings on top of `serverEnv` (the events webhook's, the storm's port and sign-in rate). */
  env?: Record<string, string> | undefined;
}

let started = 0;

function debugFlags(options: StartOptions): string[] {
  return [
    ...(options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`] : []),
    ...(options.inspect ? ["--inspect=127.0.0.1:0"] : []),
  ];
}

async function startProcess(
  kind: "server" | "relay" | "node",
  options: StartOptions,
  env: Record<string, string> = {},
): Promise<
  { child: Child; url: string; internalPort: number | undefined; inspectorUrl: string | undefined }
> {
  const logPath = `${options.logDir}/${kind}-${++started}.log`;
  const child = kind === "server"
    ? spawnDeno("server", {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-sys",
        ...(options.trace ? [`--allow-write=${options.trace}`] : []),
        ...debugFlags(options),
        options.trace ? TRACED : MAIN,
      ],
      env: {
        ...serverEnv(options.secret, options.databaseUrl),
        ...options.env,
        ...env,
        ...options.env,
        ...(options.trace ? { BENCH_TRACE_FILE: options.trace } : {}),
      },
      logPath,
      cpus: options.cpus,
    })
    : kind === "relay"
    ? spawnDeno("relay", {
      args: ["run", "--allow-all", ...debugFlags(options), RELAY],
      env: { PORT: "0" },
      logPath,
      cpus: options.cpus,
    })
    : spawnProcess("node", "node", {
      args: [...debugFlags(options), NODE_RELAY],
      env: { PORT: "0" },
      logPath,
      cpus: options.cpus,
    });
  try {
    const line = await waitForLogLine(child, /"event":"listening"/, 30_000);
    const port = Number(kind === "server" ? line.public_port : line.port);
    let inspectorUrl: string | undefined;
    if (options.inspect) {
      const text = await Deno.readTextFile(logPath);
      inspectorUrl = /Debugger listening on (ws:\/\/\S+)/.exec(text)?.[1];
      if (inspectorUrl === undefined) throw new Error(`${kind}: no inspector URL in ${logPath}`);
    }
    const internalPort = kind === "server" ? Number(line.internal_port) : undefined;
    return { child, url: `ws://127.0.0.1:${port}/ws`, internalPort, inspectorUrl };
  } catch (err) {
    await stopChild(child, 2000);
    throw err;
  }
}

/** Starts a fresh target and waits until every process of it listens. */
export async function startTarget(kind: TargetKind, options: StartOptions): Promise<Target> {
  if (kind !== "cluster" && kind !== "redis-cluster") {
    const p = await startProcess(kind, options);
    return {
      kind,
      children: [p.child],
      urls: [p.url],
      internalPorts: p.internalPort === undefined ? [] : [p.internalPort],
      inspectorUrl: p.inspectorUrl,
    };
  }
  const env = kind === "cluster"
    ? options.redis && { REDIS_URL: options.redis.url, REDIS_KEY_PREFIX: options.redis.keyPrefix }
    : options.redisCluster && {
      REDIS_CLUSTER_NODES: options.redisCluster.seeds,
      REDIS_KEY_PREFIX: options.redisCluster.keyPrefix,
    };
  if (env === undefined) throw new Error(`${kind}: no Redis configured`);
  const nodes = [];
  try {
    for (let i = 0; i < 2; i++) nodes.push(await startProcess("server", options, env));
  } catch (err) {
    await Promise.all(nodes.map((n) => stopChild(n.child, 10_000)));
    throw err;
  }
  return {
    kind,
    children: nodes.map((n) => n.child),
    urls: nodes.map((n) => n.url),
    internalPorts: nodes.map((n) => n.internalPort!),
  };
}

/** Stops a target (SIGTERM: the server shuts down gracefully), SIGKILL after 15 s. */
export async function stopTarget(target: Target): Promise<void> {
  await Promise.all(target.children.map((child) => stopChild(child, 15_000)));
}

/** Lines of the target's logs at level warn or error (how many, and the last few). */
export async function logProblems(target: Target): Promise<{ count: number; last: string[] }> {
  const bad: string[] = [];
  for (const child of target.children) {
    const text = await Deno.readTextFile(child.logPath).catch(() => "");
    bad.push(...text.split("\n").filter((l) => /"level":"(warn|error)"/.test(l)));
  }
  return { count: bad.length, last: bad.slice(-5) };
}
