/**
 * @module main
 * The composition root: configuration → free ports → bus (Redis) → repository
 * (migrations) → server, so that what fails cheaply fails before the database
 * is changed; and the shutdown order. Nothing here decides behaviour; every
 * part is in `src/`.
 */

import { type Config, loadConfig, secretWarning } from "./src/config.ts";
import { createLogger, errorMessage, type Logger } from "./src/log.ts";
import { logUnhandledDatabaseErrors } from "./src/store/mod.ts";
import type { Bus } from "./src/bus/mod.ts";
import { MemoryCluster } from "./src/bus/mod.ts";
import { RedisBus } from "./src/bus/mod.ts";
import { ServerMetrics } from "./src/metrics.ts";
import { PostgresRepository } from "./src/store/mod.ts";
import { migrateOnly } from "./src/store/mod.ts";
import { type ChatServer, startChatServer } from "./src/server/mod.ts";
import { busyAddresses, describeBusy, healthcheck } from "./src/server/mod.ts";
import { renderDemoPage } from "./src/demo_page/mod.ts";
import { wsTransport } from "./src/transport/mod.ts";
import { nativeTransport } from "./src/transport/mod.ts";

/** For a caller that runs the node in-process (`src/dev/main.ts`, `deno task dev`). */
export interface MainHooks {
  /** Called once the listeners are up (signals already handled), before the wait for a signal. */
  onStarted?(server: ChatServer): void | Promise<void>;
  /** `deno task dev`: accept the public dev-only secret, which `deno task start` refuses. */
  allowDevOnlySecret?: boolean;
  /** `deno task dev` with the dev-only secret: mints `GET /dev/token` (expired demo links renew). */
  devTokens?: (userId: number) => Promise<string>;
}

/** Runs one node configured by `env` until SIGINT or SIGTERM; resolves with the exit code. */
export async function main(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  hooks: MainHooks = {},
): Promise<number> {
  let config;
  try {
    config = loadConfig(env, { allowDevOnlySecret: hooks.allowDevOnlySecret === true });
  } catch (err) {
    // One JSON line like every other: the level is not configured yet, so errors show.
    const error = err instanceof Error ? err.message : String(err);
    createLogger("error").error("startup_failed", { error });
    return 78; // EX_CONFIG
  }
  const logger = createLogger(config.logLevel);
  const weakSecret = secretWarning(config);
  if (weakSecret !== undefined) logger.warn("auth_secret_short", { note: weakSecret });
  const stopLoggingDbErrors = logUnhandledDatabaseErrors(logger);
  try {
    return await run(config, logger, hooks);
  } finally {
    stopLoggingDbErrors();
  }
}

async function run(config: Config, logger: Logger, hooks: MainHooks): Promise<number> {
  if (config.wsTransport === "native") {
    logger.warn("native_transport", {
      note:
        "Deno.upgradeWebSocket does not bound inbound message size: do not expose to untrusted clients",
    });
  }

  let tls;
  try {
    tls = config.tlsCertFile === undefined || config.tlsKeyFile === undefined ? undefined : {
      cert: await Deno.readTextFile(config.tlsCertFile),
      key: await Deno.readTextFile(config.tlsKeyFile),
    };
  } catch (err) {
    logger.error("startup_failed", { error: `cannot read TLS files: ${errorMessage(err)}` });
    return 1;
  }

  if (config.migrate === "only") return await migrateOnly(config.databaseUrl, logger);

  // What can fail cheaply is checked before the database is touched (the migrations run when the
  // repository connects): a start that cannot listen or reach Redis leaves the database as it was.
  const busy = busyAddresses([
    { hostname: config.host, port: config.port, setting: "PORT" },
    { hostname: config.internalHost, port: config.internalPort, setting: "INTERNAL_PORT" },
  ]);
  if (busy.length > 0) {
    logger.error("startup_failed", { error: `cannot listen: ${describeBusy(busy)}` });
    return 1;
  }
  const metrics = new ServerMetrics();
  let bus: Bus;
  try {
    const redis = { url: config.redisUrl, clusterNodes: config.redisClusterNodes };
    bus = redis.url === undefined && redis.clusterNodes === undefined
      ? new MemoryCluster().node()
      : await RedisBus.connect({
        ...redis,
        keyPrefix: config.redisKeyPrefix,
        presenceTtlS: config.presenceTtlS,
        logger,
        onPublish: (ok) => metrics.busPublished(ok),
      });
  } catch (err) {
    logger.error("startup_failed", { error: errorMessage(err) });
    return 1;
  }
  let repository;
  try {
    repository = await PostgresRepository.connect({
      url: config.databaseUrl,
      poolSize: config.dbPoolSize,
      statementTimeoutMs: config.dbStatementTimeoutMs,
      relationCacheMs: config.relationCacheMs,
      logger,
      migrate: config.migrate === "off" ? "off" : "auto",
      onBatch: (size, ms) => metrics.batchCommitted(size, ms),
    });
  } catch (err) {
    logger.error("startup_failed", { error: `database: ${errorMessage(err)}` });
    await bus.close();
    return 1;
  }

  let server;
  try {
    server = await startChatServer({
      config,
      repository,
      bus,
      transport: config.wsTransport === "ws" ? wsTransport : nativeTransport,
      logger,
      tls,
      metrics,
      demoPage: config.demoPage
        ? renderDemoPage({
          maxMessageChars: config.maxMessageChars,
          tokenTtlSeconds: config.tokenTtlSeconds,
          devTokens: hooks.devTokens !== undefined,
        })
        : undefined,
      devTokens: hooks.devTokens,
    });
  } catch (err) {
    logger.error("startup_failed", { error: errorMessage(err) });
    await bus.close();
    await repository.close();
    return 1;
  }

  const stopped = Promise.withResolvers<string>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve(signal));
  }
  await hooks.onStarted?.(server);
  logger.info("shutdown_signal", { signal: await stopped.promise });

  const deadline = setTimeout(() => {
    logger.error("shutdown_timeout", { seconds: config.shutdownTimeoutS });
    Deno.exit(1);
  }, config.shutdownTimeoutS * 1000);
  await server.shutdown();
  await bus.close();
  await repository.close();
  clearTimeout(deadline);
  logger.info("exited");
  return 0;
}

if (import.meta.main) {
  // `--healthcheck`: the container's probe (src/server/healthcheck.ts) instead of a server.
  const probe = Deno.args[0] === "--healthcheck";
  Deno.exit(await (probe ? healthcheck(Deno.env.toObject()) : main()));
}
