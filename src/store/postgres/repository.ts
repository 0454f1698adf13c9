/**
 * @module store/postgres/repository
 * `ChatRepository` on PostgreSQL through postgres.js.
 *
 * - Friendship/block answers and friend lists come from a cache at most
 *   `relationCacheMs` old (the contract allows 5 s); concurrent misses for
 *   the same key share one query.
 * - Active-user checks, relations and friend lists asked for while such a query is out
 *   go together in the next one (`batch_loader.ts`): a burst of logins costs
 *   a few round trips.
 * - Messages are written by a group-commit writer (see `message_writer.ts`);
 *   the v1.1 read-back and receipt queries are in `mailbox_queries.ts`.
 * - A `read` raises a per-conversation mark and returns; the rows' flags are
 *   set behind it in small batches (`read_flags.ts`), from start to `close`.
 * - Every call has a deadline; a database that is down, unreachable or
 *   frozen surfaces as `UnavailableError`, never as a hang.
 */

import postgres, { type Sql } from "postgres";
import type { LogFields, Logger } from "../../log.ts";
import { errorMessage } from "../../log.ts";
import { migrate, pendingMigrations } from "./migrations.ts";
import { MessageWriter } from "./message_writer.ts";
import { DbClock } from "./db_clock.ts";
import type {
  ChangeResult,
  ChatRepository,
  DeliveredResult,
  MailboxSummary,
  MessagePage,
  MessageRecord,
  ModeratorDeletion,
  NewMessage,
  NewReport,
  ReadResult,
  Relation,
  ReportResult,
  SignIn,
  StoredMessage,
  StoreResult,
  TokenAccess,
  UpdatePage,
} from "../repository.ts";
import { UnavailableError } from "../repository.ts";
import { TtlCache } from "./ttl_cache.ts";
import { BatchLoader } from "./batch_loader.ts";
import * as mailbox from "./mailbox_queries.ts";
import * as moderation from "./moderation_queries.ts";
import { rowsOf } from "./pg_rows.ts";
import { ReadFlagSweeper } from "./read_flags.ts";
import { LastSeenWriter } from "./last_seen.ts";
import * as settingsQueries from "./settings_queries.ts";
import * as signInQuery from "./sign_in.ts";
import type {
  SeenState,
  SettingsBody,
  SettingsChange,
  SettingsUpdate,
  UserSettings,
} from "../settings.ts";
import * as updates from "./updates_queries.ts";
import { CountsBackfill } from "./counts_backfill.ts";

export interface PostgresOptions {
  url: string;
  poolSize: number;
  /** Deadline of one statement; the server also aborts it (statement_timeout). */
  statementTimeoutMs: number;
  relationCacheMs: number;
  logger: Logger;
  now?: () => number;
  /** Told of every committed batch (metrics). */
  onBatch?: (size: number, ms: number) => void;
  /**
   * `auto` (default) applies missing migrations at connect; `off` touches no
   * schema and refuses to connect when a migration is missing (MIGRATE).
   */
  migrate?: "auto" | "off";
  /** How often marks whose rows' flags are not all set are looked for (default 30 s). */
  readFlagsIntervalMs?: number | undefined;
}

export class PostgresRepository implements ChatRepository {
  readonly #sql: Sql;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #relations: TtlCache<string, Relation>;
  readonly #friends: TtlCache<number, readonly number[]>;
  readonly #writer: MessageWriter;
  readonly #readFlags: ReadFlagSweeper;
  readonly #lastSeen: LastSeenWriter;
  readonly #backfill: CountsBackfill;
  /** The last message id from before migration 6 (`chat_sequence_start`); read at connect. */
  #sequenceStart = 0;
  /** The database's clock, learnt from the writer's replies; receipts carry deadlines in it. */
  readonly #clock = new DbClock();
  /** User id → their latest token revocation (ms), or 0 when none; absent: not an active user. */
  readonly #activeUsers: BatchLoader<number, number | undefined>;
  /** Keyed `sender:recipient`. */
  readonly #relationPairs: BatchLoader<string, Relation>;
  readonly #friendLists: BatchLoader<number, readonly number[]>;

  private constructor(sql: Sql, options: PostgresOptions) {
    this.#sql = sql;
    this.#timeoutMs = options.statementTimeoutMs;
    this.#logger = options.logger;
    const now = options.now ?? Date.now;
    this.#relations = new TtlCache(options.relationCacheMs, 100_000, now);
    this.#friends = new TtlCache(options.relationCacheMs, 100_000, now);
    this.#activeUsers = new BatchLoader<number, number | undefined>(
      (ids) =>
        this.#deadline(async () => {
          const rows = rowsOf(
            await sql<{ id: string; revoked_ms: number | null }[]>`
          select u.user_id::text as id,
            (extract(epoch from r.revoked_at) * 1000)::float8 as revoked_ms
          from users u left join chat_token_revocations r on r.user_id = u.user_id
          where u.user_id = any(${sql.array(ids)}::bigint[]) and u.active`,
          );
          return new Map(rows.map((row) => [Number(row.id), row.revoked_ms ?? 0]));
        }, { users: ids.length }),
      undefined,
    );
    this.#relationPairs = new BatchLoader<string, Relation>((keys) =>
      this.#deadline(async () => {
        const pairs = keys.map((key) => key.split(":").map(Number) as [number, number]);
        const rows = rowsOf(
          await sql<{ s: string; r: string; friends: boolean; blocked: boolean }[]>`
          select k.s::text as s, k.r::text as r,
            exists (select 1 from friendships f
                    where f.status = 'approved'
                      and ((f.requester_user_id = k.s and f.recipient_user_id = k.r)
                        or (f.requester_user_id = k.r and f.recipient_user_id = k.s))
            ) as friends,
            exists (select 1 from blocks b
                    where (b.blocker_user_id = k.r and b.blocked_user_id = k.s)
                       or (b.blocker_user_id = k.s and b.blocked_user_id = k.r)
            ) as blocked
          from unnest(${sql.array(pairs.map((p) => p[0]))}::bigint[],
                      ${sql.array(pairs.map((p) => p[1]))}::bigint[]) as k(s, r)`,
        );
        return new Map(rows.map((row): [string, Relation] => [
          `${row.s}:${row.r}`,
          !row.friends ? "not_friends" : row.blocked ? "blocked" : "ok",
        ]));
      }, { pairs: keys.length }), "not_friends");
    this.#friendLists = new BatchLoader<number, readonly number[]>(
      (ids) =>
        this.#deadline(async () => {
          const rows = rowsOf(
            await sql<{ a: string; b: string }[]>`
          select f.requester_user_id::text as a, f.recipient_user_id::text as b
          from friendships f
          where f.status = 'approved'
            and (f.requester_user_id = any(${sql.array(ids)}::bigint[])
              or f.recipient_user_id = any(${sql.array(ids)}::bigint[]))
            and not exists (
              select 1 from blocks b
              where (b.blocker_user_id = f.requester_user_id
                     and b.blocked_user_id = f.recipient_user_id)
                 or (b.blocker_user_id = f.recipient_user_id
                     and b.blocked_user_id = f.requester_user_id))`,
          );
          const wanted = new Set(ids);
          const lists = new Map<number, number[]>(ids.map((id) => [id, []]));
          const link = (from: number, to: number) => {
            const list = lists.get(from);
            if (wanted.has(from) && list !== undefined && !list.includes(to)) list.push(to);
          };
          for (const row of rows) {
            link(Number(row.a), Number(row.b));
            link(Number(row.b), Number(row.a));
          }
          return lists;
        }, { users: ids.length }),
      [],
    );
    this.#readFlags = new ReadFlagSweeper(sql, {
      intervalMs: options.readFlagsIntervalMs,
      logger: options.logger,
    });
    this.#lastSeen = new LastSeenWriter(sql, {
      logger: options.logger,
      deadline: (work) => this.#deadline(work, {}),
    });
    this.#backfill = new CountsBackfill(sql, options.logger);
    this.#writer = new MessageWriter(
      () => open(options, 1, WRITER_SETTINGS),
      sql,
      options.statementTimeoutMs,
      (batch) => this.#deadline(batch),
      options.onBatch ?? (() => {}),
      this.#clock,
    );
  }

  /** Connects, applies migrations and returns a ready repository; rejects when it cannot. */
  static async connect(options: PostgresOptions): Promise<PostgresRepository> {
    const sql = open(options, options.poolSize, POOL_SETTINGS);
    let repository: PostgresRepository | undefined;
    try {
      if (options.migrate === "off") {
        const pending = await pendingMigrations(sql);
        if (pending.length > 0) {
          throw new Error(
            `the schema lacks migrations ${pending.join(",")} and MIGRATE=off: ` +
              "run `deno task migrate` (or start once with MIGRATE=auto)",
          );
        }
      } else {
        const applied = await migrate(sql, {
          onRetry: (version, attempt, error) =>
            options.logger.warn("migration_lock_timeout", { version, attempt, error }),
        });
        if (applied.length > 0) {
          options.logger.info("migrations_applied", { versions: applied.join(",") });
        }
      }
      repository = new PostgresRepository(sql, options);
      await repository.#writer.start();
      await repository.#readFlags.start();
      const [start] = await sql<{ last: string }[]>`
        select last_message_id::text as last from chat_sequence_start`;
      repository.#sequenceStart = Number(start?.last ?? 0);
      repository.#backfill.start();
      return repository;
    } catch (err) {
      if (repository !== undefined) {
        await repository.#backfill.close();
        await repository.#readFlags.close();
        await repository.#writer.close();
      }
      await sql.end({ timeout: 1 });
      throw err;
    }
  }

  async tokenAccess(userId: number, issuedAt: number): Promise<TokenAccess> {
    const revokedAt = await this.#activeUsers.load(userId);
    if (revokedAt === undefined) return "inactive";
    return issuedAt * 1000 <= revokedAt ? "revoked" : "ok";
  }

  /**
   * One statement (`chat_sign_in`): fresh like `tokenAccess`, so a revocation or a
   * deactivation holds for the next sign-in. The friend list it read serves
   * `friendIds` for the cache's age, as a list loaded there would.
   */
  async signIn(userId: number, issuedAt: number): Promise<SignIn> {
    const answer = await this.#deadline(
      () => signInQuery.signIn(this.#sql, userId, issuedAt),
      { user_id: userId },
    );
    if (answer.access === "ok") {
      const friends = answer.friends;
      this.#friends.get(userId, () => Promise.resolve(friends));
    }
    return answer;
  }

  revokeTokens(userIds: readonly number[], at: Date): Promise<void> {
    return this.#deadline(async () => {
      await this.#sql`
        insert into chat_token_revocations (user_id, revoked_at)
        select distinct unnest(${this.#sql.array([...userIds])}::bigint[]), ${at}::timestamptz
        on conflict (user_id) do update
          set revoked_at = greatest(chat_token_revocations.revoked_at, excluded.revoked_at)`;
    }, { users: userIds.length });
  }

  relation(senderUserId: number, recipientUserId: number): Promise<Relation> {
    const key = `${senderUserId}:${recipientUserId}`;
    return this.#relations.get(key, () => this.#relationPairs.load(key));
  }

  friendIds(userId: number): Promise<readonly number[]> {
    return this.#friends.get(userId, () => this.#friendLists.load(userId));
  }

  storeMessage(message: NewMessage): Promise<StoreResult> {
    return this.#writer.store(message);
  }

  messageByClientId(
    senderUserId: number,
    clientMessageId: string,
  ): Promise<StoredMessage | undefined> {
    return this.#deadline(
      () => moderation.messageByClientId(this.#sql, senderUserId, clientMessageId),
      { user_id: senderUserId },
    );
  }

  reportMessage(report: NewReport): Promise<ReportResult> {
    return this.#deadline(() => moderation.reportMessage(this.#sql, report), {
      user_id: report.reporterUserId,
    });
  }

  mailboxSummary(userId: number): Promise<MailboxSummary> {
    return this.#deadline(() => mailbox.mailboxSummary(this.#sql, userId), { user_id: userId });
  }

  updatesAfter(userId: number, afterSeq: number, limit: number): Promise<UpdatePage> {
    return this.#deadline(
      () => updates.updatesAfter(this.#sql, userId, afterSeq, limit),
      { user_id: userId },
    );
  }

  messagesAfter(userId: number, afterMessageId: number, limit: number): Promise<MessagePage> {
    return this.#deadline(
      () => updates.messagesAfterV11(this.#sql, userId, afterMessageId, limit, this.#sequenceStart),
      { user_id: userId },
    );
  }

  editMessage(
    userId: number,
    messageId: number,
    text: string,
    windowS: number,
    moderation?: "replaced" | "unchecked",
  ): Promise<ChangeResult> {
    return this.#deadline(
      () =>
        updates.changeMessage(
          this.#sql,
          userId,
          messageId,
          "edit",
          text,
          windowS,
          moderation ?? null,
        ),
      { user_id: userId },
    );
  }

  deleteMessage(
    userId: number,
    messageId: number,
    scope: "everyone" | "me",
  ): Promise<ChangeResult> {
    return this.#deadline(
      () => updates.changeMessage(this.#sql, userId, messageId, scope, null, 0, null),
      { user_id: userId },
    );
  }

  messageFor(userId: number, messageId: number): Promise<MessageRecord | undefined> {
    return this.#deadline(() => updates.messageFor(this.#sql, userId, messageId), {
      user_id: userId,
    });
  }

  deleteAsModerator(messageIds: readonly number[]): Promise<ModeratorDeletion[]> {
    return this.#deadline(() => updates.deleteAsModerator(this.#sql, messageIds), {
      messages: messageIds.length,
    });
  }

  conversationBefore(
    userId: number,
    friendUserId: number,
    beforeMessageId: number | undefined,
    limit: number,
  ): Promise<MessagePage> {
    return this.#deadline(
      () => mailbox.conversationBefore(this.#sql, userId, friendUserId, beforeMessageId, limit),
      { user_id: userId },
    );
  }

  markRead(readerUserId: number, friendUserId: number, upToMessageId: number): Promise<
    ReadResult | undefined
  > {
    return this.#deadline(
      () =>
        mailbox.markRead(this.#sql, readerUserId, friendUserId, upToMessageId, this.#notAfter()),
      { user_id: readerUserId },
    ).then((read) => {
      if (read !== undefined) this.#readFlags.wake(readerUserId, friendUserId);
      return read;
    });
  }

  markDelivered(recipientUserId: number, messageId: number): Promise<DeliveredResult> {
    return this.#deadline(
      () => mailbox.markDelivered(this.#sql, recipientUserId, messageId, this.#notAfter()),
      { user_id: recipientUserId },
    );
  }

  inactiveUsers(userIds: readonly number[]): Promise<number[]> {
    return this.#deadline(() => mailbox.inactiveUsers(this.#sql, userIds), {
      users: userIds.length,
    });
  }

  settings(userId: number): Promise<UserSettings> {
    return this.#deadline(() => settingsQueries.readSettings(this.#sql, userId), {
      user_id: userId,
    });
  }

  updateSettings(
    userId: number,
    change: SettingsChange,
    body: SettingsBody,
  ): Promise<SettingsUpdate> {
    return this.#deadline(
      () => settingsQueries.updateSettings(this.#sql, userId, change, body),
      { user_id: userId },
    );
  }

  seenStates(userIds: readonly number[]): Promise<Map<number, SeenState>> {
    return this.#deadline(() => settingsQueries.seenStates(this.#sql, userIds), {
      users: userIds.length,
    });
  }

  appearsOffline(userId: number): Promise<boolean> {
    return this.#deadline(() => settingsQueries.appearsOffline(this.#sql, userId), {
      user_id: userId,
    });
  }

  recordLastSeen(userId: number, at: Date): void {
    this.#lastSeen.record(userId, at);
  }

  queuedMessages(): number {
    return this.#writer.queued;
  }

  async isReady(): Promise<boolean> {
    try {
      await this.#deadline(() => this.#sql`select 1`, {}, Math.min(this.#timeoutMs, 2000));
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.#lastSeen.flush();
    await this.#backfill.close();
    await this.#readFlags.close();
    await this.#writer.close();
    await this.#sql.end({ timeout: 5 });
  }

  /**
   * The instant, in the database's clock, after which a receipt update must
   * change nothing: a statement queued behind a dead connection and sent
   * after the caller was answered `unavailable` marks nothing read or delivered.
   */
  #notAfter(): Date {
    return this.#clock.after(this.#timeoutMs);
  }

  /**
   * Runs `work` against the deadline; any database failure becomes
   * `UnavailableError`. The margin over the statement timeout lets a batch
   * the database reached in time commit and answer before it is given up.
   * `about` names whose request it was in the failure's log line: `user_id`
   * for one user's query, so a user whose requests keep failing is visible;
   * the size of a batch shared by many.
   */
  #deadline<T>(
    work: () => Promise<T>,
    about: LogFields = {},
    ms = this.#timeoutMs + DEADLINE_MARGIN_MS,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#logger.warn("db_deadline_exceeded", { ...about, ms });
        reject(new UnavailableError("database deadline exceeded"));
      }, ms);
      work().then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (err) => {
          clearTimeout(timer);
          this.#logger.warn("db_error", { ...about, error: errorMessage(err), code: pgCode(err) });
          reject(err instanceof UnavailableError ? err : new UnavailableError(errorMessage(err)));
        },
      );
    });
  }
}

const DEADLINE_MARGIN_MS = 1000;

/**
 * The writer's connection runs only the batch insert, whose probe for repeats
 * must use the unique index. postgres.js prepares the statement, and after a
 * few runs Postgres keeps one generic plan for the connection's life; planned
 * while `messages` was small (a new deployment, or statistics taken on an empty
 * table), that plan scanned the whole table once per message, so every batch
 * cost more as the table grew (8-row batches: 0.8 → 14 ms over 16,000 rows,
 * until the next ANALYZE). With sequential scans priced out, the plan is the
 * index probe whatever the statistics say.
 */
export const WRITER_SETTINGS = { enable_seqscan: "off" } as const;

/**
 * The pool runs only this server's own statements, the mailbox queries
 * among them written as ordered key ranges of one index each
 * (`mailbox_queries.ts`). The planner estimates a row comparison by its
 * first column alone, and that column leads other indexes too: on the
 * bench's million rows it read all of a friend's received messages through
 * one of those and sorted them (1,000 rows for a history page of 51). With
 * sorts priced out, the ordered range is the plan; the one sort left, the
 * merge of a page's two directions (1,002 rows at most), is in every plan.
 * That sort's penalty lifts the plan's cost past `jit_above_cost`, and
 * compiling it took 100 ms for a 0.5 ms query: JIT is off (no query here
 * reads enough rows to gain from it).
 */
export const POOL_SETTINGS = {
  enable_sort: "off",
  enable_incremental_sort: "off",
  jit: "off",
} as const;

/** A postgres.js client of `max` connections, each with the statement timeout. */
function open(options: PostgresOptions, max: number, settings: Record<string, string> = {}): Sql {
  return postgres(options.url, {
    max,
    connect_timeout: Math.ceil(options.statementTimeoutMs / 1000),
    idle_timeout: 60,
    // A statement the server has not finished by the deadline is aborted
    // there too, so a late commit cannot follow an `unavailable` answer.
    connection: {
      statement_timeout: options.statementTimeoutMs,
      application_name: "geobeasts-chat",
      ...settings,
    },
    onnotice: () => {},
  });
}

function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
