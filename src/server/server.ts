/**
 * @module server/server
 * One chat node: the hub, the public listener (WebSocket + HTTP) and the
 * internal listener, with connection admission and the shutdown sequence.
 * Storage and the bus are passed in and stay owned by the caller.
 */

import type { Bus } from "../bus/mod.ts";
import type { Config } from "../config.ts";
import { normaliseOrigin } from "../config.ts";
import { internalApp, publicApp } from "./http.ts";
import { Hub } from "../hub/mod.ts";
import { errorMessage, type Logger } from "../log.ts";
import { ServerMetrics } from "../metrics.ts";
import type { ChatRepository } from "../store/mod.ts";
import {
  DeadlineQueue,
  LoginRates,
  SendOrder,
  Session,
  type SessionContext,
  type SessionHooks,
  UserWork,
} from "../session/mod.ts";
import { HttpModerator } from "../moderation/mod.ts";
import { importTokenKey } from "../token.ts";
import { type EventsWebhook, startEventsWebhook } from "../events/mod.ts";
import { startActiveCheck } from "./active_check.ts";
import { startOperatorWatch, statusData } from "./operator.ts";
import { withDevTokens } from "./dev_tokens.ts";
import { CloseCode, serverFrames } from "../protocol/mod.ts";
import { TypingExpiry } from "../hub/mod.ts";
import type { Listener, Transport, UpgradeInfo } from "../transport/mod.ts";

export interface ChatServerOptions {
  config: Config;
  repository: ChatRepository;
  bus: Bus;
  transport: Transport;
  logger: Logger;
  /** PEM text, read by the caller from `TLS_CERT_FILE` / `TLS_KEY_FILE`. */
  tls?: { cert: string; key: string } | undefined;
  /** HTML served at `GET /` on the public listener (the demo page). */
  demoPage?: string | undefined;
  now?: (() => number) | undefined;
  /** Shared with the repository and bus so one scrape shows them all; a fresh one by default. */
  metrics?: ServerMetrics | undefined;
  /**
   * `deno task dev` with its public dev-only secret only: mints the token `GET /dev/token?user=N`
   * answers (`dev_tokens.ts`). Unset, that route does not exist.
   */
  devTokens?: ((userId: number) => Promise<string>) | undefined;
}

export interface ChatServer {
  readonly publicPort: number;
  readonly internalPort: number;
  readonly hub: Hub;
  readonly metrics: ServerMetrics;
  /**
   * Readiness off, no new connections, every message received so far
   * committed and acknowledged, every socket closed with 1001, listeners
   * closed. Storage and bus are left to the caller.
   */
  shutdown(): Promise<void>;
}

export async function startChatServer(options: ChatServerOptions): Promise<ChatServer> {
  const { config, repository, bus, logger } = options;
  const now = options.now ?? Date.now;
  const metrics = options.metrics ?? new ServerMetrics();
  const typing = new TypingExpiry(
    config.typingTimeoutS * 1000,
    (recipient, frame) => hub.sendToUser(recipient, frame, true),
  );
  const hub: Hub = new Hub({
    bus,
    repository,
    logger,
    maxConnectionsPerUser: config.maxConnectionsPerUser,
    presenceGraceMs: config.presenceGraceS * 1000,
    onUserGone: (userId) => typing.typistGone(userId),
    now,
  });
  const monotonic = () => performance.now();
  const expiries = new DeadlineQueue(now);
  const tokenKey = await importTokenKey(config.authSecret);
  const moderator = config.moderationUrl === undefined ? undefined : await HttpModerator.create({
    url: config.moderationUrl,
    secret: config.moderationSecret ?? "",
    timeoutMs: config.moderationTimeoutMs,
    fail: config.moderationFail,
    maxInFlight: config.moderationMaxInFlight,
    maxMessageChars: config.maxMessageChars,
    metrics,
    logger,
    now,
  });
  /** One context for every session (a copy per connection would cost memory per connection). */
  const sessionContext: SessionContext = {
    hub,
    repository,
    typing,
    tokenKey,
    limits: config,
    logger,
    metrics,
    now,
    monotonic,
    expiries,
    userWork: new UserWork(
      config.maxDbFramesPerUser,
      config.maxQueuedDbFramesPerUser,
      config.catchUpBytesPerS,
      monotonic,
    ),
    logins: new LoginRates(config, monotonic),
    moderator,
    sendOrder: new SendOrder(),
  };
  const sessions = new Set<Session>();
  const unauthByIp = new Map<string, number>();
  let shuttingDown = false;

  const isReady = async () => !shuttingDown && bus.isReady() && (await repository.isReady());

  const admit = (info: UpgradeInfo): Response | null => {
    const origin = info.headers.get("origin");
    if (
      origin !== null && config.allowedOrigins !== undefined &&
      !config.allowedOrigins.has(normaliseOrigin(origin))
    ) {
      return refusal(403, "Origin not allowed");
    }
    if (shuttingDown) return refusal(503, "Server is shutting down");
    if (sessions.size >= config.maxConnections) return refusal(503, "Server is at capacity");
    if ((unauthByIp.get(clientIp(info, config.trustedProxies)) ?? 0) >= config.maxUnauthPerIp) {
      return refusal(429, "Too many unauthenticated connections from this address");
    }
    return null;
  };

  /** One for every session: a session's address is the `ip` it was counted under. */
  const sessionHooks: SessionHooks = {
    onUnauthenticatedEnd(session) {
      const ip = session.clientAddress;
      const left = (unauthByIp.get(ip) ?? 1) - 1;
      if (left > 0) unauthByIp.set(ip, left);
      else unauthByIp.delete(ip);
    },
    onClosed: (session) => sessions.delete(session),
  };

  /** Accepted public TCP connections not upgraded yet (seen by the `ws` transport only). */
  let pendingConnections = 0;
  /**
   * A TCP connection holds a slot of its address's `MAX_UNAUTH_PER_IP` from
   * the moment it is accepted until it is upgraded (its session then holds
   * one until it authenticates) or closes, so half-open sockets count too. A
   * trusted proxy carries many clients: those are counted by
   * `X-Forwarded-For` at the upgrade instead.
   *
   * At the limit, the address's oldest unfinished connection is dropped for
   * the new one (docs/protocol.md "Connecting"): slow headers from one
   * address cannot lock that address's other users out. Only when every slot
   * is a session or a request in progress is the new connection refused.
   */
  const admitConnection = (
    address: string,
    evictOldest: () => boolean,
  ): (() => void) | null => {
    if (config.trustedProxies.has(address)) {
      pendingConnections++;
      return () => pendingConnections--;
    }
    if ((unauthByIp.get(address) ?? 0) >= config.maxUnauthPerIp) {
      if (!evictOldest()) {
        metrics.connectionRefusedPerAddress();
        return null;
      }
      metrics.connectionEvictedPerAddress();
    }
    const held = unauthByIp.get(address) ?? 0;
    unauthByIp.set(address, held + 1);
    pendingConnections++;
    return () => {
      pendingConnections--;
      const left = (unauthByIp.get(address) ?? 1) - 1;
      if (left > 0) unauthByIp.set(address, left);
      else unauthByIp.delete(address);
    };
  };

  const publicListener = await options.transport({
    hostname: config.host,
    port: config.port,
    tls: options.tls,
    maxPayload: config.maxFrameBytes,
    idleTimeoutMs: config.idleTimeoutS * 1000,
    headersTimeoutMs: config.headersTimeoutMs,
    admitConnection,
    wsPaths: ["/", "/ws"],
    fetch: withDevTokens(
      publicApp({ isReady, logger, demoPage: options.demoPage }).fetch,
      options.devTokens,
    ),
    checkUpgrade: admit,
    onOpen(conn, info) {
      const ip = clientIp(info, config.trustedProxies);
      unauthByIp.set(ip, (unauthByIp.get(ip) ?? 0) + 1);
      const session = new Session(conn, sessionContext, sessionHooks, ip);
      sessions.add(session);
      return session;
    },
  });

  const operatorDeps = {
    metrics,
    repository,
    bus,
    logger,
    busHasBroker: config.redisUrl !== undefined,
  };
  let internalListener: Listener;
  try {
    internalListener = await options.transport({
      hostname: config.internalHost,
      port: config.internalPort,
      maxPayload: config.maxFrameBytes,
      idleTimeoutMs: config.idleTimeoutS * 1000,
      headersTimeoutMs: config.headersTimeoutMs,
      wsPaths: [],
      fetch: internalApp({
        isReady,
        logger,
        notifySecret: config.notifySecret,
        maxFrameBytes: config.maxFrameBytes,
        notify(userIds, frame) {
          for (const userId of userIds) hub.sendToUser(userId, frame, false);
        },
        metrics: () => metrics.render(),
        async disconnect(userIds, reason) {
          const frame = serverFrames.sessionExpired(reason);
          const signOut = () => {
            for (const userId of userIds) hub.endUser(userId, frame);
          };
          signOut();
          // The revocation makes the sign-out hold (docs/protocol.md, "POST /disconnect"); the
          // answer waits for it. A sign-in checked while it was being stored may have passed:
          // signed out again once it is.
          try {
            await repository.revokeTokens(userIds, new Date(now()));
          } catch (err) {
            logger.error("token_revocation_failed", {
              users: userIds.length,
              error: errorMessage(err),
            });
            throw err;
          }
          signOut();
        },
        online: (userIds) => hub.onlineAmong(userIds),
        async deleteMessages(messageIds) {
          const deleted = await repository.deleteAsModerator(messageIds);
          for (const { message, seqs } of deleted) {
            for (const [userId, seq] of seqs) {
              hub.sendToUser(userId, serverFrames.messageUpdated(message, seq), false);
            }
          }
          return deleted.length;
        },
        statusSecret: config.statusSecret,
        metricsSecret: config.metricsSecret,
        statusData: () => statusData(operatorDeps),
      }).fetch,
      checkUpgrade: () => refusal(404, "Not found"),
      onOpen: () => {
        throw new Error("the internal listener accepts no WebSocket");
      },
    });
  } catch (err) {
    await publicListener.close();
    throw err;
  }

  const stopOperatorWatch = startOperatorWatch(operatorDeps);
  const stopEventLoopMonitor = metrics.monitorEventLoop();
  const stopActiveCheck = startActiveCheck({
    hub,
    repository,
    logger,
    intervalMs: config.activeCheckIntervalS * 1000,
  });

  let events: EventsWebhook | undefined;
  try {
    events = await startWebhook(config, logger, metrics);
  } catch (err) {
    await stopActiveCheck();
    stopEventLoopMonitor();
    await stopOperatorWatch();
    await internalListener.close();
    await publicListener.close();
    throw err;
  }

  metrics.setGauges({
    connections: () => ({
      authenticated: hub.connectionCount,
      unauthenticated: sessions.size - hub.connectionCount,
    }),
    users: () => hub.userCount,
    pendingConnections: () => pendingConnections,
    queuedMessages: () => repository.queuedMessages?.() ?? 0,
  });

  logger.info("listening", {
    transport: config.wsTransport,
    public_host: config.host,
    public_port: publicListener.port,
    internal_host: config.internalHost,
    internal_port: internalListener.port,
    tls: options.tls !== undefined,
  });

  return {
    publicPort: publicListener.port,
    internalPort: internalListener.port,
    hub,
    metrics,
    async shutdown() {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.info("shutdown_started", { connections: sessions.size });
      const startedAt = performance.now();
      const msSince = (t: number) => Math.round(performance.now() - t);
      await stopActiveCheck();
      stopEventLoopMonitor();
      await stopOperatorWatch();
      // Pending events stay in the outbox for the next node to send.
      await events?.stop();
      await publicListener.stopAccepting();
      await Promise.all([...sessions].map((session) => session.drain()));
      const drainMs = msSince(startedAt);
      const closingAt = performance.now();
      for (const session of [...sessions]) {
        session.close(CloseCode.goingAway, "server shutting down");
      }
      // Give clients a moment to complete the closing handshake, then cut the rest.
      for (let waited = 0; sessions.size > 0 && waited < CLOSE_GRACE_MS; waited += 10) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await publicListener.close();
      const closeMs = msSince(closingAt);
      typing.close();
      expiries.close();
      const gracesAt = performance.now();
      await hub.endGraces();
      const presenceMs = msSince(gracesAt);
      await internalListener.close();
      // Where a drain's time went: answering what was received, closing the sockets, and
      // announcing the users offline.
      logger.info("shutdown_complete", {
        drain_ms: drainMs,
        close_ms: closeMs,
        presence_ms: presenceMs,
        total_ms: msSince(startedAt),
      });
    },
  };
}

const CLOSE_GRACE_MS = 2000;

/** The events webhook when `EVENTS_URL` is set; it reads and writes the database on its own. */
function startWebhook(
  config: Config,
  logger: Logger,
  metrics: ServerMetrics,
): Promise<EventsWebhook | undefined> {
  if (config.eventsUrl === undefined || config.eventsSecret === undefined) {
    return Promise.resolve(undefined);
  }
  return startEventsWebhook({
    databaseUrl: config.databaseUrl,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    url: config.eventsUrl,
    secret: config.eventsSecret,
    batchMax: config.eventsBatchMax,
    batchMs: config.eventsBatchMs,
    retryForS: config.eventsRetryForS,
    unseenDelayS: config.unseenDelayS,
    logger,
    metrics,
  });
}

function refusal(status: number, error: string): Response {
  return Response.json({ error }, { status });
}

/**
 * The client's address: the TCP peer, or, when that peer is a trusted proxy,
 * the nearest address in `X-Forwarded-For` that is not a trusted proxy.
 */
export function clientIp(info: UpgradeInfo, trustedProxies: ReadonlySet<string>): string {
  if (!trustedProxies.has(info.remoteAddress)) return info.remoteAddress;
  const forwarded = (info.headers.get("x-forwarded-for") ?? "").split(",").map((s) => s.trim());
  for (let i = forwarded.length - 1; i >= 0; i--) {
    const hop = forwarded[i]!;
    if (hop !== "" && !trustedProxies.has(hop)) return hop;
  }
  return info.remoteAddress;
}
