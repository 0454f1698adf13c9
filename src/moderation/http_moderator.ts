/**
 * @module moderation/http_moderator
 * The moderation hook over HTTP (docs/protocol.md, "Moderation hook"): one
 * signed POST per message, one attempt, `timeoutMs` for the whole answer
 * (headers and body). Whatever is not an answer (a timeout, a connection
 * error, a non-2xx status, a body that is not `allow` / `replace` / `reject`,
 * a replacement that breaks a sent text's rules) is a failure, and the
 * failure rule decides: `open` stores the text as sent, marked `unchecked`;
 * `closed` refuses it `unavailable`.
 *
 * At most `maxInFlight` calls are out at once; a message beyond them is not
 * held: the failure rule applies at once (cause `busy`), so a slow hook cannot
 * make the node hold messages without bound.
 *
 * Each outcome is counted (`Metrics.moderationReviewed`); the log says when
 * the hook starts failing, when the cause changes and when it answers again,
 * not once per message. Neither the log nor the body carries a token, and
 * the log carries no message text.
 */

import type { Logger } from "../log.ts";
import type { Metrics, ModerationResult } from "../metrics.ts";
import { checkText } from "../protocol/mod.ts";
import type { ModerationOutcome, ModerationRequest, Moderator } from "./moderator.ts";
import { importSigningKey, signBody } from "../webhook_signature.ts";

export type FailureRule = "open" | "closed";

export interface HttpModeratorOptions {
  url: string;
  secret: string;
  timeoutMs: number;
  fail: FailureRule;
  maxInFlight: number;
  /** A replacement's longest text, as for a sent one (`MAX_MESSAGE_CHARS`). */
  maxMessageChars: number;
  metrics: Pick<Metrics, "moderationReviewed">;
  logger: Logger;
  /** Milliseconds since the epoch (default `Date.now`): the signed timestamp, and when the hook counts as recovered. */
  now?: () => number;
}

/** The `reason` of a rejection that gave none. */
export const DEFAULT_REJECT_REASON = "Message rejected";

type Failure = Exclude<ModerationResult, "allowed" | "replaced" | "rejected">;

/** A call that did not give an answer, and why (for the log; never the message text). */
class HookFailure extends Error {
  constructor(readonly kind: Failure, detail: string) {
    super(detail);
  }
}

/** How long the hook must go without a failure before it is logged as recovered. */
const RECOVERED_AFTER_MS = 10_000;

export class HttpModerator implements Moderator {
  readonly #options: HttpModeratorOptions;
  readonly #key: CryptoKey;
  readonly #now: () => number;
  #inFlight = 0;
  /** The cause of the last failure while failing; undefined while the hook answers. */
  #failing: Failure | undefined;
  /** When the last call failed (ms since the epoch). */
  #lastFailureAt = 0;

  private constructor(options: HttpModeratorOptions, key: CryptoKey) {
    this.#options = options;
    this.#key = key;
    this.#now = options.now ?? Date.now;
  }

  static async create(options: HttpModeratorOptions): Promise<HttpModerator> {
    return new HttpModerator(options, await importSigningKey(options.secret));
  }

  /** Calls out now (for tests and metrics). */
  get inFlight(): number {
    return this.#inFlight;
  }

  async review(request: ModerationRequest): Promise<ModerationOutcome> {
    const { metrics } = this.#options;
    if (this.#inFlight >= this.#options.maxInFlight) {
      const busy = new HookFailure("busy", `${this.#inFlight} calls in flight`);
      return this.#failed(request, busy, undefined);
    }
    this.#inFlight++;
    const started = performance.now();
    try {
      const outcome = await this.#call(request);
      const seconds = (performance.now() - started) / 1000;
      metrics.moderationReviewed(
        outcome.kind === "reject"
          ? "rejected"
          : outcome.kind === "store" && outcome.moderation === "replaced"
          ? "replaced"
          : "allowed",
        seconds,
      );
      this.#answering();
      return outcome;
    } catch (err) {
      const failure = err instanceof HookFailure
        ? err
        : new HookFailure("connection", err instanceof Error ? err.message : String(err));
      return this.#failed(request, failure, (performance.now() - started) / 1000);
    } finally {
      this.#inFlight--;
    }
  }

  async #call(request: ModerationRequest): Promise<ModerationOutcome> {
    const body = JSON.stringify(wireBody(request));
    const timestamp = Math.floor(this.#now() / 1000);
    const signature = await signBody(this.#key, timestamp, body);
    const { timeoutMs } = this.#options;
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, timeoutMs);
    try {
      const response = await fetch(this.#options.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-chat-timestamp": String(timestamp),
          "x-chat-signature": signature,
        },
        body,
        signal: abort.signal,
      });
      if (response.status < 200 || response.status > 299) {
        await response.body?.cancel();
        throw new HookFailure("status", `HTTP ${response.status}`);
      }
      const text = await response.text();
      return this.#answer(text, request.messageText);
    } catch (err) {
      if (timedOut) throw new HookFailure("timeout", `no answer within ${timeoutMs} ms`);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The outcome a 2xx body says, or a `body` failure. */
  #answer(text: string, sent: string): ModerationOutcome {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new HookFailure("body", "the body is not JSON");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new HookFailure("body", "the body is not a JSON object");
    }
    const answer = value as Record<string, unknown>;
    switch (answer.action) {
      case "allow":
        return { kind: "store", text: sent };
      case "replace": {
        if (typeof answer.message_text !== "string") {
          throw new HookFailure("body", "replace without a message_text string");
        }
        const checked = checkText(answer.message_text, this.#options);
        if (typeof checked !== "string") {
          throw new HookFailure("body", `the replacement breaks a text's rules: ${checked.code}`);
        }
        return { kind: "store", text: checked, moderation: "replaced" };
      }
      case "reject": {
        if (
          answer.reason !== undefined && answer.reason !== null && typeof answer.reason !== "string"
        ) {
          throw new HookFailure("body", "reject with a reason that is not a string");
        }
        const reason = typeof answer.reason === "string" ? answer.reason.trim() : "";
        return { kind: "reject", reason: reason === "" ? DEFAULT_REJECT_REASON : reason };
      }
      default:
        throw new HookFailure("body", "the action is not allow, replace or reject");
    }
  }

  #failed(
    request: ModerationRequest,
    failure: HookFailure,
    seconds: number | undefined,
  ): ModerationOutcome {
    this.#options.metrics.moderationReviewed(failure.kind, seconds);
    this.#lastFailureAt = (this.#options.now ?? Date.now)();
    if (this.#failing !== failure.kind) {
      this.#options.logger.warn("moderation_failing", {
        cause: failure.kind,
        previous_cause: this.#failing ?? null,
        error: failure.message,
        fail: this.#options.fail,
      });
      this.#failing = failure.kind;
    }
    return this.#options.fail === "open"
      ? { kind: "store", text: request.messageText, moderation: "unchecked" }
      : { kind: "unavailable" };
  }

  /**
   * The hook answered. It counts as recovered (one log line) only once it has
   * gone `RECOVERED_AFTER_MS` without a failure: a hook flapping at the
   * in-flight bound, failing and answering in turn, logs its cause once, not
   * a pair of lines every few milliseconds.
   */
  #answering(): void {
    if (this.#failing === undefined) return;
    if ((this.#options.now ?? Date.now)() - this.#lastFailureAt < RECOVERED_AFTER_MS) return;
    this.#options.logger.info("moderation_recovered", { previous_cause: this.#failing });
    this.#failing = undefined;
  }
}

/** The hook's body: snake_case, optional fields left out when absent. */
function wireBody(request: ModerationRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { kind: request.kind };
  if (request.messageId !== undefined) body.message_id = request.messageId;
  body.sender_user_id = request.senderUserId;
  body.recipient_user_id = request.recipientUserId;
  body.message_text = request.messageText;
  if (request.clientMessageId !== undefined) body.client_message_id = request.clientMessageId;
  return body;
}
