/**
 * @module events/unread
 * The recipient's unread total a `message.unseen` carries. The one place it
 * is computed, so that switching to per-user unread counters is one change.
 */

import type { Sql, TransactionSql } from "postgres";
import { mailboxSummary } from "../store/mod.ts";

/** Messages to `userId` not read yet, counted as `authenticated.unread_count` counts them. */
export async function unreadTotal(sql: TransactionSql, userId: number): Promise<number> {
  // A transaction runs the same tagged-template queries as the pool.
  return (await mailboxSummary(sql as unknown as Sql, userId)).unreadCount;
}
