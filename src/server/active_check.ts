/**
 * @module server/active_check
 * Signs out deactivated users (docs/protocol.md, "Session lifetime": `active =
 * false` closes the user's connections on every node within 60 s). Each node checks only its
 * own users, every `ACTIVE_CHECK_INTERVAL_S`, so the work is spread over the
 * cluster and needs nothing from the bus.
 */

import type { Hub } from "../hub/mod.ts";
import { errorMessage, type Logger } from "../log.ts";
import { serverFrames } from "../protocol/mod.ts";
import type { ChatRepository } from "../store/mod.ts";

/** Users asked about per query. */
const CHUNK = 1000;

export interface ActiveCheckOptions {
  hub: Hub;
  repository: ChatRepository;
  logger: Logger;
  intervalMs: number;
}

/** Starts the periodic check; the returned function stops it (and waits for a run in progress). */
export function startActiveCheck(options: ActiveCheckOptions): () => Promise<void> {
  const { hub, repository, logger } = options;
  let running: Promise<void> | undefined;
  const check = async () => {
    const users = hub.localUserIds();
    for (let i = 0; i < users.length; i += CHUNK) {
      let inactive: number[];
      try {
        inactive = await repository.inactiveUsers(users.slice(i, i + CHUNK));
      } catch (err) {
        // The next round tries again; a database outage must not sign anyone out.
        logger.warn("active_check_failed", { error: errorMessage(err) });
        return;
      }
      for (const userId of inactive) {
        logger.info("user_deactivated_closed", { user_id: userId });
        hub.endLocal(userId, serverFrames.sessionExpired("deactivated"));
      }
    }
  };
  const timer = setInterval(() => {
    // A round still running (a slow database) is not doubled up.
    running ??= check().finally(() => (running = undefined));
  }, options.intervalMs);
  return async () => {
    clearInterval(timer);
    await running;
  };
}
