/**
 * @module store/postgres/migrations
 * Applies the schema (`schema.ts`) to a database the game backend is using
 * at the same moment, without getting in its way:
 *
 * - Applied versions are recorded in `chat_server_migrations`, a table of our
 *   own: `schema_migrations` belongs to other tools (Rails, dbmate) and is
 *   never touched.
 * - One node at a time: a session-level advisory lock, so nodes starting
 *   together apply each version once (the others wait, then find it done).
 *   They wait by polling `pg_try_advisory_lock`, not inside a statement: a
 *   waiting statement holds a snapshot, which CREATE INDEX CONCURRENTLY on
 *   the first node would wait for in turn (a deadlock).
 * - Each version's SQL runs in one transaction under `lock_timeout`: a DDL
 *   statement that would queue behind a game transaction gives up after
 *   `lockTimeoutMs` (and the game's inserts queued behind it go on), and is
 *   retried with backoff a few times before start-up fails in one line.
 * - Indexes are built `CREATE INDEX CONCURRENTLY IF NOT EXISTS`, outside any
 *   transaction and without the statement timeout; an invalid index a failed
 *   concurrent build left behind is dropped and built again.
 * - A version is recorded only once its SQL and all its indexes are done.
 */

import postgres, { type Sql } from "postgres";
import { errorMessage, type Logger } from "../../log.ts";
import { type IndexSpec, MIGRATIONS } from "./schema.ts";

export { MESSAGE_ID_LOCK, MIGRATIONS } from "./schema.ts";

/** Where this server records its applied versions. */
export const MIGRATIONS_TABLE = "chat_server_migrations";

/** An arbitrary constant naming this server's migration lock. */
const MIGRATION_LOCK = 7_315_004_211;

export interface MigrateOptions {
  /** How long one DDL statement may wait for a table lock (default 1000). */
  lockTimeoutMs?: number;
  /** Tries of a version's SQL that ran out of lock time (default 5). */
  attempts?: number;
  /** Wait before the second try, doubled for each later one (default 500). */
  backoffMs?: number;
  /** Told of each retry. */
  onRetry?: (version: number, attempt: number, error: string) => void;
}

/** Applies the migrations not yet recorded; returns the versions it applied. */
export async function migrate(sql: Sql, options: MigrateOptions = {}): Promise<number[]> {
  const lockTimeoutMs = options.lockTimeoutMs ?? 1000;
  const attempts = options.attempts ?? 5;
  const backoffMs = options.backoffMs ?? 500;
  const session = await sql.reserve();
  try {
    // Index builds may take minutes on a large table; the lock wait too.
    await session.unsafe("set statement_timeout = 0");
    await takeMigrationLock(session);
    try {
      await session.unsafe(`
        create table if not exists ${MIGRATIONS_TABLE} (
          version integer primary key,
          name text not null,
          applied_at timestamptz not null default now()
        )`);
      const done = await appliedVersions(session);
      const applied: number[] = [];
      for (const migration of MIGRATIONS) {
        if (done.has(migration.version)) continue;
        for (let attempt = 1;; attempt++) {
          try {
            await inTransaction(session, lockTimeoutMs, migration.sql);
            break;
          } catch (err) {
            const message = oneLine(err);
            if (pgCode(err) !== "55P03" || attempt >= attempts) {
              throw new Error(
                `migration ${migration.version} (${migration.name}) failed` +
                  (pgCode(err) === "55P03"
                    ? ` after ${attempt} tries of ${lockTimeoutMs} ms for a table lock`
                    : "") +
                  `: ${message}`,
              );
            }
            options.onRetry?.(migration.version, attempt, message);
            await new Promise((r) => setTimeout(r, backoffMs * 2 ** (attempt - 1)));
          }
        }
        for (const index of migration.indexes ?? []) {
          try {
            await buildIndex(session, index);
          } catch (err) {
            throw new Error(
              `migration ${migration.version} (${migration.name}): index ${index.name}: ${
                oneLine(err)
              }`,
            );
          }
        }
        await session.unsafe(
          `insert into ${MIGRATIONS_TABLE} (version, name) values ($1, $2)
           on conflict (version) do nothing`,
          [migration.version, migration.name],
        );
        applied.push(migration.version);
      }
      return applied;
    } finally {
      await session.unsafe(`select pg_advisory_unlock(${MIGRATION_LOCK})`).catch(() => {});
    }
  } finally {
    await session.unsafe("reset statement_timeout; reset lock_timeout").catch(() => {});
    session.release();
  }
}

/** The versions known to this server that the database has not recorded yet. */
export async function pendingMigrations(sql: Sql): Promise<number[]> {
  const [table] = await sql<{ exists: boolean }[]>`
    select to_regclass(${MIGRATIONS_TABLE}) is not null as exists`;
  const done = table?.exists ? await appliedVersions(sql) : new Set<number>();
  return MIGRATIONS.map((m) => m.version).filter((v) => !done.has(v));
}

async function takeMigrationLock(session: Sql): Promise<void> {
  for (;;) {
    const [row] = await session.unsafe<{ ok: boolean }[]>(
      `select pg_try_advisory_lock(${MIGRATION_LOCK}) as ok`,
    );
    if (row?.ok) return;
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
}

/** How often a node waiting for another's migrations asks for the lock again. */
const LOCK_POLL_MS = 250;

async function appliedVersions(sql: Sql): Promise<Set<number>> {
  const rows = await sql.unsafe<{ version: number }[]>(
    `select version from ${MIGRATIONS_TABLE}`,
  );
  return new Set(rows.map((row) => Number(row.version)));
}

async function inTransaction(session: Sql, lockTimeoutMs: number, body: string): Promise<void> {
  await session.unsafe("begin");
  try {
    await session.unsafe(`set local lock_timeout = ${Math.floor(lockTimeoutMs)}`);
    await session.unsafe(body);
    await session.unsafe("commit");
  } catch (err) {
    await session.unsafe("rollback").catch(() => {});
    throw err;
  }
}

/**
 * Builds one index concurrently. CREATE INDEX CONCURRENTLY takes a lock that
 * does not block inserts, then waits for the transactions already running;
 * no lock timeout applies to it. A build that failed before left an invalid
 * index of that name, which IF NOT EXISTS would keep: it is dropped first.
 */
async function buildIndex(session: Sql, index: IndexSpec): Promise<void> {
  await session.unsafe("set lock_timeout = 0");
  const [existing] = await session.unsafe<{ valid: boolean }[]>(
    `select i.indisvalid as valid from pg_index i
     join pg_class c on c.oid = i.indexrelid
     where c.relname = $1 and c.relnamespace = current_schema()::regnamespace`,
    [index.name],
  );
  if (existing?.valid === false) {
    await session.unsafe(`drop index concurrently if exists ${index.name}`);
  }
  await session.unsafe(
    `create ${index.unique ? "unique " : ""}index concurrently if not exists ${index.name}
     on ${index.on}`,
  );
}

function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, " ").trim();
}

/**
 * `MIGRATE=only` / `deno task migrate`: applies the migrations once and
 * resolves with the process's exit code (1 after one `startup_failed` line).
 */
export async function migrateOnly(url: string, logger: Logger): Promise<number> {
  const sql = postgres(url, {
    max: 1,
    connect_timeout: 10,
    connection: { application_name: "geobeasts-chat-migrate" },
    onnotice: () => {},
  });
  try {
    const applied = await migrate(sql, {
      onRetry: (version, attempt, error) =>
        logger.warn("migration_lock_timeout", { version, attempt, error }),
    });
    logger.info("migrations_applied", { versions: applied.join(",") || "none" });
    return 0;
  } catch (err) {
    logger.error("startup_failed", { error: `migrations: ${errorMessage(err)}` });
    return 1;
  } finally {
    await sql.end({ timeout: 5 });
  }
}
