/**
 * @module store
 * Users, friendships, blocks and messages: the `ChatRepository` interface and
 * its guarantees (`repository.ts`), the in-memory repository (tests), and the
 * PostgreSQL one with its migrations.
 */

export * from "./repository.ts";
export * from "./settings.ts";
export { MemoryRepository } from "./memory.ts";
export {
  logUnhandledDatabaseErrors,
  mailboxSummary,
  migrate,
  migrateOnly,
  type PostgresOptions,
  PostgresRepository,
} from "./postgres/mod.ts";
