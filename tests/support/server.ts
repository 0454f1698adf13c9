/**
 * @module server
 * A real chat server for a test: its own database (seeded with users and
 * friendships when asked) or the in-memory repository (`startMemoryServer`),
 * port 0 on 127.0.0.1, the transport under test, and helpers to connect as a
 * user.
 */

import { MemoryCluster } from "../../src/bus/memory.ts";
import type { Bus } from "../../src/bus/bus.ts";
import { type Config, loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { ServerMetrics } from "../../src/metrics.ts";
import {
  type ChatRepository,
  logUnhandledDatabaseErrors,
  MemoryRepository,
} from "../../src/store/mod.ts";
import { PostgresRepository } from "../../src/store/postgres/repository.ts";
import { type ChatServer, startChatServer } from "../../src/server/server.ts";
import { nativeTransport } from "../../src/transport/native.ts";
import type { Transport } from "../../src/transport/transport.ts";
import { wsTransport } from "../../src/transport/ws.ts";
import { signIn, TEST_SECRET, TestClient, testToken } from "./client.ts";
import { RawWs } from "../raw_ws.ts";
import { createTestDatabase, type Seed, type TestDatabase } from "./db.ts";
import { type DatabaseProxy, startDatabaseProxy } from "./tcp_proxy.ts";

export const TRANSPORTS: Record<string, Transport> = { ws: wsTransport, native: nativeTransport };

/** `users` and `friends` are created once the database is migrated, before the server starts. */
export interface TestServerOptions extends Seed {
  env?: Record<string, string>;
  transport?: Transport;
  /** Share a database (two nodes of one cluster); a fresh one by default. */
  db?: TestDatabase;
  /** Share a bus cluster (several nodes in one process). */
  cluster?: MemoryCluster;
  /** Makes this node's bus (e.g. a `RedisBus`); wins over `cluster`. Closed by `close()`. */
  bus?: () => Promise<Bus>;
  now?: () => number;
  /** HTML served at `GET /` (what `DEMO_PAGE=true` serves). */
  demoPage?: string;
  /** Rewrites the database URL the server uses (e.g. to go through a TCP proxy). */
  databaseUrl?: (url: string) => string;
  /** Serve `GET /dev/token` as `deno task dev` does with its dev-only secret (signed now). */
  devTokens?: boolean;
}

export interface TestServer {
  server: ChatServer;
  db: TestDatabase;
  repository: PostgresRepository;
  bus: Bus;
  wsUrl: string;
  httpUrl: string;
  internalUrl: string;
  token(userId: number, timestamp?: number): Promise<string>;
  /** Opens a connection and authenticates as `userId` (its `authenticated` frame is consumed). */
  connectAs(userId: number): Promise<TestClient>;
  connect(path?: string): Promise<TestClient>;
  /**
   * A hand-made WebSocket that sends `authenticate` as `userId` and never reads
   * (a stalled or vanishing client); the caller closes it.
   */
  rawAs(userId: number): Promise<RawWs>;
  /** Shuts the server down, then drops the database unless it was passed in. */
  close(): Promise<void>;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  // As main.ts does for a node: postgres.js leaves the failure of its own type query on a new
  // connection unhandled (store/postgres/background_errors.ts), which must not end the process.
  const stopGuard = logUnhandledDatabaseErrors(silentLogger);
  const db = options.db ?? (await createTestDatabase());
  const config = testConfig(options, options.databaseUrl?.(db.url) ?? db.url);
  const metrics = new ServerMetrics();
  const repository = await PostgresRepository.connect({
    url: config.databaseUrl,
    poolSize: 4,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    relationCacheMs: config.relationCacheMs,
    logger: silentLogger,
    onBatch: (size, ms) => metrics.batchCommitted(size, ms),
  });
  try {
    await db.seed(options);
  } catch (err) {
    await repository.close();
    if (options.db === undefined) await db.drop();
    throw err;
  }
  const node = await serve(config, metrics, repository, options);
  return {
    ...node,
    db,
    repository,
    async close() {
      await node.close();
      await repository.close();
      if (options.db === undefined) await db.drop();
      stopGuard();
    },
  };
}

/** What a server on the memory repository offers: `TestServer` without a database. */
export type MemoryTestServer = Omit<TestServer, "db" | "repository"> & {
  repository: MemoryRepository;
};

/**
 * A real server on port 0 whose storage is the in-memory repository, seeded
 * with `users` and `friends`: for tests about sockets, frames and the hub
 * that need no database.
 */
export async function startMemoryServer(
  options: Omit<TestServerOptions, "db" | "databaseUrl"> = {},
): Promise<MemoryTestServer> {
  const config = testConfig(options, "postgres://unused");
  const repository = new MemoryRepository();
  for (const user of options.users ?? []) {
    if (typeof user === "number") repository.addUser(user);
    else repository.addUser(user.id, user.active ?? true);
  }
  for (const [a, b, status] of options.friends ?? []) repository.befriend(a, b, status);
  const node = await serve(config, new ServerMetrics(), repository, options);
  return { ...node, repository };
}

function testConfig(options: TestServerOptions, databaseUrl: string): Config {
  return loadConfig({
    AUTH_SECRET: TEST_SECRET,
    HOST: "127.0.0.1",
    PORT: "0",
    INTERNAL_PORT: "0",
    DATABASE_URL: databaseUrl,
    // No presence grace unless a test asks for one: most tests watch `offline` right after a close.
    PRESENCE_GRACE_S: "0",
    ...options.env,
  });
}

/** The server, its bus and its clients; `close` leaves the repository to the caller. */
async function serve(
  config: Config,
  metrics: ServerMetrics,
  repository: ChatRepository,
  options: TestServerOptions,
): Promise<Omit<TestServer, "db" | "repository">> {
  const bus = options.bus !== undefined
    ? await options.bus()
    : (options.cluster ?? new MemoryCluster()).node();
  const server = await startChatServer({
    config,
    repository,
    bus,
    transport: options.transport ?? wsTransport,
    logger: silentLogger,
    metrics,
    now: options.now,
    demoPage: options.demoPage,
    devTokens: options.devTokens ? (userId) => testToken(userId, TEST_SECRET) : undefined,
  });
  const clients: TestClient[] = [];
  const connect = async (path = "/ws") => {
    const client = await TestClient.open(`ws://127.0.0.1:${server.publicPort}${path}`);
    clients.push(client);
    return client;
  };
  const token = (userId: number, timestamp?: number) => testToken(userId, TEST_SECRET, timestamp);
  return {
    server,
    bus,
    wsUrl: `ws://127.0.0.1:${server.publicPort}/ws`,
    httpUrl: `http://127.0.0.1:${server.publicPort}`,
    internalUrl: `http://127.0.0.1:${server.internalPort}`,
    token,
    connect,
    async rawAs(userId) {
      const raw = await RawWs.connect(server.publicPort, "/ws");
      const auth = JSON.stringify({ type: "authenticate", auth_token: await token(userId) });
      await raw.send({ opcode: 1, payload: new TextEncoder().encode(auth) });
      return raw;
    },
    async connectAs(userId) {
      return signIn(await connect(), await token(userId));
    },
    async close() {
      await server.shutdown();
      await Promise.all(clients.map((c) => c.closed));
      await bus.close();
    },
  };
}

/** Runs `body` on a fresh server (`startTestServer(options)`), closed afterwards whatever happens. */
export async function withTestServer(
  options: TestServerOptions,
  body: (t: TestServer) => Promise<void>,
): Promise<void> {
  const t = await startTestServer(options);
  try {
    await body(t);
  } finally {
    await t.close();
  }
}

/**
 * Runs `body` on a fresh server whose database connections go through a proxy the test can cut
 * or freeze (a database outage), with statement deadlines of `deadlineMs` and no relation cache;
 * the proxy is restored before the server closes.
 */
export async function withDatabaseProxy(
  deadlineMs: number,
  options: TestServerOptions,
  body: (t: TestServer, proxy: DatabaseProxy) => Promise<void>,
): Promise<void> {
  const proxy = await startDatabaseProxy();
  const env = { DB_STATEMENT_TIMEOUT_MS: String(deadlineMs), RELATION_CACHE_MS: "0" };
  try {
    await withTestServer(
      { ...options, env: { ...env, ...options.env }, databaseUrl: proxy.route },
      async (t) => {
        try {
          await body(t, proxy);
        } finally {
          proxy.restore();
        }
      },
    );
  } finally {
    proxy.restore();
    await proxy.close();
  }
}
