/**
 * @module store/postgres/background_errors
 * postgres.js 3.4 runs a query of its own on every new connection (the array
 * types, before the first query of ours) and does not catch its failure. When
 * the database stalls past the statement timeout at that moment, the rejection
 * is unhandled and, in Deno, ends the process: a node lost every connection to
 * a slow catalog read (seen in CI: a server exited right after its migrations;
 * porsager/postgres#1192, #1205).
 * A rejection carrying a PostgreSQL error is logged instead; any other still
 * ends the process, as an unexpected rejection should.
 */

import type { Logger } from "../../log.ts";
import { errorMessage } from "../../log.ts";

/** Installs the handler; returns its removal (for a node run in-process). */
export function logUnhandledDatabaseErrors(logger: Logger): () => void {
  const onRejection = (event: PromiseRejectionEvent) => {
    const reason = event.reason as { name?: unknown; code?: unknown } | null;
    if (reason === null || typeof reason !== "object" || reason.name !== "PostgresError") return;
    event.preventDefault();
    logger.error("db_background_error", {
      error: errorMessage(event.reason),
      code: typeof reason.code === "string" ? reason.code : undefined,
    });
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  return () => globalThis.removeEventListener("unhandledrejection", onRejection);
}
