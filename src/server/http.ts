/**
 * @module server/http
 * The HTTP routes of both listeners, as Hono apps. Every failure leaves
 * with a JSON body: through the `onError` / `notFound` pair, and the control
 * routes' bearer check and body limit (Hono's `bearerAuth` and `bodyLimit`)
 * with bodies of the same shape.
 */

import { type Context, Hono, type MiddlewareHandler } from "@hono/hono";
import { bearerAuth } from "@hono/hono/bearer-auth";
import { bodyLimit } from "@hono/hono/body-limit";
import { HTTPException } from "@hono/hono/http-exception";
import { errorMessage, type Logger } from "../log.ts";
import { parseUserId } from "../protocol/mod.ts";
import { STATUS_PAGE } from "./status_page.ts";

export interface HealthDeps {
  /** False while shutting down or while the database does not answer. */
  isReady(): Promise<boolean>;
}

export interface InternalDeps extends HealthDeps {
  notifySecret: string | undefined;
  maxFrameBytes: number;
  /** Sends `frame` to every connection of each user, on every node. */
  notify(userIds: readonly number[], frame: string): void;
  metrics(): Promise<string>;
  logger: Logger;
  /**
   * Sends `session_expired` with `reason` to every connection of each user, on every node, then
   * closes them, and stores the revocation of their tokens. Resolves once the revocation is
   * stored; rejects when storing it failed or timed out (the connections are closed either way).
   */
  disconnect(userIds: readonly number[], reason: string): Promise<void>;
  /** Which of `userIds` are online anywhere in the cluster. */
  online(userIds: readonly number[]): Promise<number[]>;
  /**
   * `POST /messages/delete`: deletes these messages for everyone on their
   * senders' behalf and tells both users; resolves with how many it deleted.
   */
  deleteMessages(messageIds: readonly number[]): Promise<number>;
  /** The bearer a scrape of `/metrics` must send (`METRICS_SECRET`); open when undefined. */
  metricsSecret: string | undefined;
  /** The bearer of `/status/data` (`STATUS_SECRET`, else `NOTIFY_SECRET`). */
  statusSecret: string | undefined;
  /** What the status page draws. */
  statusData(): Promise<Record<string, unknown>>;
}

export interface PublicDeps extends HealthDeps {
  logger: Logger;
  /** The demo page's HTML, served at `GET /` when set. */
  demoPage?: string | undefined;
}

const MAX_NOTIFY_USERS = 1000;

/** Routes of the public listener (WebSocket upgrades are taken before these). */
export function publicApp(deps: PublicDeps): Hono {
  const app = base(deps.logger);
  health(app, deps);
  const page = deps.demoPage;
  if (page !== undefined) app.get("/", (c) => c.html(page));
  return app;
}

/** Routes of the internal listener. */
export function internalApp(deps: InternalDeps): Hono {
  const app = base(deps.logger);
  health(app, deps);
  if (deps.metricsSecret !== undefined) app.use("/metrics", bearer(deps.metricsSecret));
  app.get("/metrics", async (c) =>
    c.body(await deps.metrics(), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    }));
  // The page holds no data; it asks for the secret and sends it to /status/data.
  app.get("/status", (c) => c.html(STATUS_PAGE));
  if (deps.statusSecret !== undefined) {
    app.get(
      "/status/data",
      bearer(deps.statusSecret),
      async (c) => c.json(await deps.statusData(), 200, { "cache-control": "no-store" }),
    );
  }
  // Without a secret the control routes do not exist: they answer 404 like any unknown path.
  if (deps.notifySecret === undefined) return app;
  const auth = bearer(deps.notifySecret);
  const notifyLimit = MAX_NOTIFY_USERS * 20 + deps.maxFrameBytes + 1024;
  app.post("/notify", auth, limitBody(notifyLimit), async (c) => {
    const parsed = parseNotify(await c.req.text(), deps.maxFrameBytes);
    if (typeof parsed === "string") return c.json({ error: parsed }, 400);
    deps.notify(parsed.userIds, parsed.frame);
    deps.logger.info("notify", { users: parsed.userIds.length });
    return c.json({ users: parsed.userIds.length }, 202);
  });
  app.post("/disconnect", auth, limitBody(MAX_CONTROL_BODY_BYTES), async (c) => {
    const parsed = parseDisconnect(await c.req.text());
    if (typeof parsed === "string") return c.json({ error: parsed }, 400);
    try {
      await deps.disconnect(parsed.userIds, parsed.reason);
    } catch {
      // Logged where it failed (token_revocation_failed); the connections are closed already.
      return c.json({ error: REVOCATION_FAILED }, 503);
    }
    deps.logger.info("disconnect", { users: parsed.userIds.length });
    return c.json({ users: parsed.userIds.length }, 202);
  });
  app.post("/messages/delete", auth, limitBody(MAX_CONTROL_BODY_BYTES), async (c) => {
    const parsed = parseMessageDeletion(await c.req.text());
    if (typeof parsed === "string") return c.json({ error: parsed }, 400);
    try {
      const deleted = await deps.deleteMessages(parsed.messageIds);
      deps.logger.info("messages_deleted_by_moderator", {
        asked: parsed.messageIds.length,
        deleted,
      });
      return c.json({ deleted }, 202);
    } catch (err) {
      deps.logger.warn("messages_delete_failed", { error: errorMessage(err) });
      return c.json({ error: "Storage unavailable, nothing was deleted; retry" }, 503);
    }
  });
  app.get("/presence", auth, async (c) => {
    const userIds = parseIdList(c.req.query("user_ids"));
    if (typeof userIds === "string") return c.json({ error: userIds }, 400);
    return c.json({ online: await deps.online(userIds) }, 200);
  });
  return app;
}

/** Largest `/disconnect` body: 1,000 ids and a reason. */
const MAX_CONTROL_BODY_BYTES = MAX_NOTIFY_USERS * 20 + 2048;
const MAX_REASON_CHARS = 200;
const DEFAULT_DISCONNECT_REASON = "disconnected";
const REVOCATION_FAILED =
  "The connections were closed but the token revocation could not be stored; retry the request";

/**
 * Requires `Authorization: Bearer <secret>`. Every refusal, a missing header, a malformed one
 * or a wrong secret, is 401 with the same JSON body (Hono's `WWW-Authenticate` challenge tells
 * the three apart, as RFC 6750 has it). The secret is compared by `secretsEqual`: constant
 * time, and its length does not leak either. The secret is a bearer token (`loadConfig`
 * refuses others: Hono's `bearerAuth` could never match them).
 */
function bearer(secret: string): MiddlewareHandler {
  const refusal = { message: (c: Context) => c.json({ error: "Unauthorized" }, 401) };
  return bearerAuth({
    verifyToken: (token) => secretsEqual(token, secret),
    noAuthenticationHeader: refusal,
    invalidAuthenticationHeader: refusal,
    invalidToken: refusal,
  });
}

/** Answers 413 with a JSON body past `maxBytes`, before reading on when the length is declared. */
function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: (c) => c.json({ error: `Body larger than ${maxBytes} bytes` }, 413),
  });
}

/** The body as a JSON object, or what is wrong with it. */
function jsonObject(text: string): Record<string, unknown> | string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return "Body must be JSON";
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return "Body must be a JSON object";
  }
  return body as Record<string, unknown>;
}

/** Validates a `/disconnect` body: 1–1000 user ids and an optional reason. */
export function parseDisconnect(text: string): { userIds: number[]; reason: string } | string {
  const body = jsonObject(text);
  if (typeof body === "string") return body;
  const { user_ids: ids, reason } = body;
  const userIds = distinctUserIds(ids);
  if (typeof userIds === "string") return userIds;
  if (reason !== undefined && (typeof reason !== "string" || reason.length > MAX_REASON_CHARS)) {
    return `reason must be a string of at most ${MAX_REASON_CHARS} characters`;
  }
  return { userIds, reason: reason ?? DEFAULT_DISCONNECT_REASON };
}

/** Validates a `/messages/delete` body: 1–1000 message ids and an optional reason. */
export function parseMessageDeletion(text: string): { messageIds: number[] } | string {
  const body = jsonObject(text);
  if (typeof body === "string") return body;
  const { message_ids: ids, reason } = body;
  const messageIds = distinctIds(ids, "message");
  if (typeof messageIds === "string") return messageIds;
  if (reason !== undefined && (typeof reason !== "string" || reason.length > MAX_REASON_CHARS)) {
    return `reason must be a string of at most ${MAX_REASON_CHARS} characters`;
  }
  return { messageIds };
}

/** Validates `user_ids=1,2,3` of `/presence`: 1–1000 positive integers. */
export function parseIdList(query: string | undefined): number[] | string {
  const parts = (query ?? "").split(",").map((part) => part.trim());
  const error = `user_ids must be a comma-separated list of 1-${MAX_NOTIFY_USERS} user ids`;
  if (query === undefined || query.trim() === "" || parts.length > MAX_NOTIFY_USERS) return error;
  const ids = distinctUserIds(parts.map((part) => (/^[0-9]+$/.test(part) ? Number(part) : part)));
  return typeof ids === "string" ? error : ids;
}

function distinctUserIds(ids: unknown): number[] | string {
  return distinctIds(ids, "user");
}

/** 1–1000 positive integers, without repeats, or what is wrong with them (`<what>_ids`). */
function distinctIds(ids: unknown, what: "user" | "message"): number[] | string {
  if (!Array.isArray(ids) || ids.length < 1 || ids.length > MAX_NOTIFY_USERS) {
    return `${what}_ids must be an array of 1-${MAX_NOTIFY_USERS} ${what} ids`;
  }
  const distinct = new Set<number>();
  for (const id of ids) {
    const parsed = typeof id === "number" ? parseUserId(id) : undefined;
    if (parsed === undefined) return `${what}_ids must hold positive integers`;
    distinct.add(parsed);
  }
  return [...distinct];
}

function base(logger: Logger): Hono {
  const app = new Hono();
  app.notFound((c) => c.json({ error: "Not found" }, 404));
  app.onError((err, c) => {
    // The middlewares' refusals (401, 413) carry their own JSON response.
    if (err instanceof HTTPException) return err.getResponse();
    logger.error("http_error", { path: c.req.path, error: errorMessage(err) });
    return c.json({ error: "Internal error" }, 500);
  });
  return app;
}

function health(app: Hono, deps: HealthDeps): void {
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get(
    "/readyz",
    async (c) =>
      (await deps.isReady()) ? c.json({ status: "ready" }) : c.json({ status: "unavailable" }, 503),
  );
}

/**
 * Validates a notify body; returns the distinct user ids and the frame text, or why not. Two
 * forms: `{user_ids, event}` sends `event`; the PHP backend's own push, `{type: "chat_message",
 * message: {sender_user_id, recipient_user_id, ...}}`, sends the whole body to both users.
 */
export function parseNotify(
  text: string,
  maxFrameBytes: number,
): { userIds: number[]; frame: string } | string {
  const body = jsonObject(text);
  if (typeof body === "string") return body;
  if (!("user_ids" in body) && body.type === "chat_message") {
    return parseBackendPush(body, maxFrameBytes);
  }
  const { user_ids: ids, event } = body;
  const userIds = distinctUserIds(ids);
  if (typeof userIds === "string") return userIds;
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    return "event must be a JSON object";
  }
  if (typeof (event as Record<string, unknown>).type !== "string") {
    return "event must have a string type";
  }
  const frame = JSON.stringify(event);
  if (new TextEncoder().encode(frame).length > maxFrameBytes) {
    return `event must be at most ${maxFrameBytes} bytes of JSON`;
  }
  return { userIds, frame };
}

/**
 * The body `chat.php` posts after storing a message: it goes as sent to the sender and the
 * recipient. Ids may be JSON numbers or decimal strings (PDO can return either).
 */
function parseBackendPush(
  body: Record<string, unknown>,
  maxFrameBytes: number,
): { userIds: number[]; frame: string } | string {
  const message = body.message;
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return "message must be a JSON object (or send {user_ids, event})";
  }
  const { sender_user_id: sender, recipient_user_id: recipient } = message as Record<
    string,
    unknown
  >;
  const senderId = parseUserId(sender);
  const recipientId = parseUserId(recipient);
  if (senderId === undefined || recipientId === undefined) {
    return "message.sender_user_id and message.recipient_user_id must be positive integers";
  }
  const frame = JSON.stringify(body);
  if (new TextEncoder().encode(frame).length > maxFrameBytes) {
    return `body must be at most ${maxFrameBytes} bytes of JSON`;
  }
  return { userIds: [...new Set([senderId, recipientId])], frame };
}

/** Compares two secrets in constant time (digests first, so lengths do not leak either). */
export async function secretsEqual(a: string, b: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [da, db] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  const x = new Uint8Array(da);
  const y = new Uint8Array(db);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}
