/**
 * @module store/postgres
 * The PostgreSQL repository: cached relation look-ups, the batching message
 * writer, the catch-up queries, and the migrations written for a live game
 * database.
 */

export { type PostgresOptions, PostgresRepository } from "./repository.ts";
export { migrate, migrateOnly } from "./migrations.ts";
export { logUnhandledDatabaseErrors } from "./background_errors.ts";
export { mailboxSummary } from "./mailbox_queries.ts";
