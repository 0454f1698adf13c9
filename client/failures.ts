/**
 * @module failures
 * What the client tells of a connection that failed (`error` events `connect_failed` and
 * `connection_lost`, see README.md, "Connection failures"): a WebSocket says little, so the
 * message is put together from what is known — whether the socket ever opened, what the runtime
 * said in its `error` event (Deno and Node say why; browsers say nothing), the close code and
 * reason, and the URL's host. All runtime code lives inside the class (the demo page embeds its
 * source; see README.md, "Using it without a build step").
 */

import type { ClientErrorEvent, ConnectFailure } from "./frames.ts";

/** Builders of the connection failures' `error` events. */
export class ChatFailures {
  /** `host:port` of `url` (the URL itself when it does not parse). */
  static hostOf(url: string): string {
    try {
      return new URL(url).host || url;
    } catch {
      return url;
    }
  }

  /** What an `error` event of the WebSocket says, when it says anything (browsers do not). */
  static errorText(event: unknown): string | undefined {
    const { message, error } = (event ?? {}) as { message?: unknown; error?: unknown };
    if (typeof message === "string" && message !== "") return message;
    if (error instanceof Error && error.message !== "") return error.message;
    return undefined;
  }

  /**
   * The socket closed before it opened. Deno and Node tell why in the error event, which is
   * sorted here into refused, DNS, TLS or an HTTP answer to the upgrade; a browser tells nothing
   * (close code 1006) and shows the reason only in its console.
   */
  static connectFailed(url: string, host: string, detail: string | undefined): ClientErrorEvent {
    const said = detail ?? "";
    const status = /(?:status code|server response)\D{0,3}(\d{3})/i.exec(said);
    let kind: ConnectFailure;
    let why: string;
    if (/refused|tcp connect error|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|timed? ?out/i.test(said)) {
      kind = "refused";
      why = "connection refused or unreachable: is the server running and listening there?";
    } else if (/dns|ENOTFOUND|EAI_AGAIN|getaddrinfo|lookup/i.test(said)) {
      kind = "dns";
      why = "the host name did not resolve (DNS)";
    } else if (/tls|ssl|certificate|corrupt message|wrong version number|handshake/i.test(said)) {
      kind = "tls";
      why = "TLS failed: a wss:// URL for a server without TLS, or a certificate this client " +
        "does not trust";
    } else if (status !== null) {
      kind = "upgrade_refused";
      why = `the server answered the upgrade with HTTP ${status[1]} (404: wrong path; 403: ` +
        "origin not allowed; 429: too many connections from this address; 503: at capacity or " +
        "shutting down)";
    } else if (said !== "") {
      kind = "unknown";
      why = said;
    } else {
      kind = "unknown";
      why = "closed before the WebSocket upgrade, and this runtime does not say why (a browser " +
        "shows it in its console): the server may be down or unreachable, the name may not " +
        "resolve, TLS may have failed, or the upgrade was answered with an HTTP error";
    }
    return {
      type: "error",
      code: "connect_failed",
      message: `cannot connect to ${host}: ${why}`,
      failure: kind,
      url,
      ...(status === null ? {} : { http_status: Number(status[1]) }),
      ...(detail === undefined ? {} : { cause: detail }),
    };
  }

  /** What the close codes the server sends mean (docs/protocol.md, "Close codes"). */
  static readonly #CLOSE_CODES: Readonly<Record<number, string>> = {
    1000: "normal close",
    1001: "the server is shutting down or restarting",
    1002: "protocol error",
    1006: "no close frame: the network or the server went away",
    1007: "invalid UTF-8 in a message",
    1008: "policy: no sign-in in time, too many failed sign-ins, or rate abuse",
    1009: "a message too big",
    1011: "server error",
    1012: "the server is restarting",
    1013: "try again later: too many connections for this user, or a slow reader",
  };

  /** An open socket closed that this client did not close. */
  static connectionLost(host: string, code: number, reason: string): ClientErrorEvent {
    const meaning = ChatFailures.#CLOSE_CODES[code];
    const said = `${code}${meaning === undefined ? "" : ` (${meaning})`}`;
    return {
      type: "error",
      code: "connection_lost",
      message: code === 1006
        ? `connection to ${host} lost: ${said}`
        : `connection to ${host} closed by the server with ${said}${reason ? `: ${reason}` : ""}`,
      close_code: code,
      close_reason: reason,
    };
  }
}
