/**
 * @module main
 * The composition root: configuration → repository → bus → server, and the
 * shutdown order. Nothing here decides behaviour; every part is in `src/`.
 */

import { loadConfig } from "./src/config.ts";
import { createLogger, errorMessage } from "./src/log.ts";
import { MemoryCluster } from "./src/bus_memory.ts";
import { PostgresRepository } from "./src/repository_postgres.ts";
import { startChatServer } from "./src/server.ts";
import { wsTransport } from "./src/transport_ws.ts";
import { nativeTransport } from "./src/transport_native.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (err) {
    console.error(`geobeasts-chat: ${err instanceof Error ? err.message : String(err)}`);
    return 78; // EX_CONFIG
  }
  const logger = createLogger(config.logLevel);
  if (config.redisUrl !== undefined) {
    logger.error("startup_failed", {
      error: "REDIS_URL is set but this build has no Redis bus yet",
    });
    return 78;
  }
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

  let repository;
  try {
    repository = await PostgresRepository.connect({
      url: config.databaseUrl,
      poolSize: config.dbPoolSize,
      statementTimeoutMs: config.dbStatementTimeoutMs,
      relationCacheMs: config.relationCacheMs,
      logger,
    });
  } catch (err) {
    logger.error("startup_failed", { error: `database: ${errorMessage(err)}` });
    return 1;
  }
  const bus = new MemoryCluster().node();

  let server;
  try {
    server = await startChatServer({
      config,
      repository,
      bus,
      transport: config.wsTransport === "ws" ? wsTransport : nativeTransport,
      logger,
      tls,
    });
  } catch (err) {
    logger.error("startup_failed", { error: errorMessage(err) });
    await repository.close();
    return 1;
  }

  const stopped = Promise.withResolvers<string>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve(signal));
  }
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

Deno.exit(await main());
