/**
 * @module auth
 * Signing in (docs/protocol.md, `authenticate` / `authenticated` / `auth_error`) and keeping the
 * session alive (`reauthenticate` before `session_expires_at`). Every token comes from
 * `getToken()`, asked again for every socket and every refresh; one that fails is an `error`
 * event `get_token_failed`, so a failure shows on every attempt instead of as a silent cycle. All
 * runtime code lives inside the class (the demo page embeds its source; see README.md, "Using it
 * without a build step").
 */

import type { ChatEmitter } from "./emitter.ts";
import type { ClientErrorEvent } from "./frames.ts";
import type { ChatLink } from "./link.ts";
import type { ChatClientOptions, Timers, WebSocketLike } from "./options.ts";
import { ChatRefreshTimer } from "./refresh.ts";

/** Who is signed in, and the token refresh of their session. */
export class ChatAuth {
  readonly #getToken: () => Promise<string>;
  readonly #emitter: ChatEmitter;
  readonly #link: ChatLink;
  readonly #refresh: ChatRefreshTimer;
  #userId: number | undefined;
  /** A `reauthenticate` went out and has no answer yet: an `auth_error` is its refusal. */
  #reauthenticating = false;

  constructor(options: ChatClientOptions, timers: Timers, emitter: ChatEmitter, link: ChatLink) {
    this.#getToken = options.getToken;
    this.#emitter = emitter;
    this.#link = link;
    this.#refresh = new ChatRefreshTimer(
      timers,
      options.now ?? Date.now,
      options.refreshBeforeMs ?? 120_000,
      () => void this.#reauthenticate(),
    );
  }

  /** The authenticated user, once known (kept across reconnects). */
  get userId(): number | undefined {
    return this.#userId;
  }

  /** Sends `authenticate` on a socket that just opened; gives the socket up without a token. */
  async signIn(ws: WebSocketLike): Promise<void> {
    const token = await this.#token();
    if (ws !== this.#link.socket || this.#link.state !== "authenticating") return;
    if (typeof token === "string") {
      this.#link.write(JSON.stringify({ type: "authenticate", auth_token: token }));
    } else this.#link.abandon(ws, token.message);
  }

  /** `authenticated` came: this is the user from now on. */
  signedIn(userId: number): void {
    this.#userId = userId;
    this.#reauthenticating = false;
  }

  /** The session ends at `expiresAt` (from `authenticated` or `reauthenticated`). */
  expiresAt(expiresAt: string | undefined): void {
    this.#reauthenticating = false;
    this.#refresh.schedule(expiresAt);
  }

  /**
   * `auth_error`: a refused refresh keeps the session (it keeps its expiry, and the refresh is
   * tried again); a refused sign-in closes the socket, and the reconnect asks `getToken()` for a
   * fresh token, the attempt counting for the backoff.
   */
  refused(): void {
    if (this.#link.state === "open" && this.#reauthenticating) {
      this.#reauthenticating = false;
      this.#emitter.emit("error", {
        type: "error",
        code: "reauth_failed",
        message: "The server refused the refreshed token; the session keeps its expiry",
      });
      this.#refresh.retry();
    } else this.#link.closeSocket(4001, "authentication failed");
  }

  /** The socket is gone or the client stopped: a refresh waits for the next session. */
  stop(): void {
    this.#reauthenticating = false;
    this.#refresh.stop();
  }

  /** Sends `reauthenticate` with a fresh token, on the socket that is open now. */
  async #reauthenticate(): Promise<void> {
    const ws = this.#link.socket;
    if (this.#link.state !== "open" || ws === undefined) return;
    const token = await this.#token();
    if (ws !== this.#link.socket || this.#link.state !== "open") return;
    if (typeof token !== "string") return this.#refresh.retry();
    this.#reauthenticating = true;
    this.#link.write(JSON.stringify({ type: "reauthenticate", auth_token: token }));
  }

  /** A token from `getToken()`, or the `get_token_failed` event it emitted. */
  async #token(): Promise<string | ClientErrorEvent> {
    let token: unknown;
    let cause: unknown;
    try {
      token = await this.#getToken();
    } catch (err) {
      cause = err;
    }
    if (typeof token === "string" && token !== "") return token;
    const failure: ClientErrorEvent = {
      type: "error",
      code: "get_token_failed",
      message: cause === undefined
        ? "getToken failed: it returned no token string"
        : `getToken failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      ...(cause === undefined ? {} : { cause }),
    };
    if (this.#link.state !== "closed") this.#emitter.emit("error", failure);
    return failure;
  }
}
