/**
 * @module link
 * What the parts of the client (keep-alive, sign-in, outbox) need of the connection. Types only:
 * those parts hold the connection through this interface, so that the connection, which creates
 * some of them, and they do not import each other in a cycle.
 */

import type { ConnectionState } from "./frames.ts";
import type { WebSocketLike } from "./options.ts";

/** The connection as the client's parts see it (`ChatConnection` implements it). */
export interface ChatLink {
  readonly state: ConnectionState;
  /** The socket in use now; undefined between sockets. */
  readonly socket: WebSocketLike | undefined;
  /**
   * Writes a frame on the socket in use; without one, or on a closing one, the frame is dropped:
   * what needs an answer is kept by its owner and re-sent after the next authentication.
   */
  write(frame: string): void;
  /**
   * Gives up on `ws`, which may be dead, without waiting for its closing handshake; reconnects.
   * `dead`: the connection stopped answering, an `error` event `connection_lost` says so.
   */
  abandon(ws: WebSocketLike, reason: string, dead?: boolean): void;
  /** Closes the socket in use on purpose (a refused sign-in); a reconnect follows. */
  closeSocket(code: number, reason: string): void;
}
