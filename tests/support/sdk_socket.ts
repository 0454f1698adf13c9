/**
 * @module sdk_socket
 * A real WebSocket for the client SDK (its `WebSocket` option) that a test steers: where each
 * connection goes, which incoming frames reach the SDK and as what, and what it sends.
 */

import type { WebSocketLike } from "../../client/chat_client.ts";

export interface SocketHooks {
  /** Where a connection the SDK opens to `url` goes (a refusing port plays a network down). */
  route?(url: string): string;
  /** Told of each socket opened, numbered from 0. */
  opened?(ws: WebSocket, connection: number): void;
  /** Whether an incoming frame reaches the SDK (`ws` lets the test cut the connection instead). */
  deliver?(data: string, ws: WebSocket, connection: number): boolean;
  /** What the SDK receives instead of an incoming frame that is delivered. */
  rewrite?(data: string): string;
  /** Told of each frame the SDK sends. */
  sent?(data: string): void;
}

export function steeredWebSocket(hooks: SocketHooks): new (url: string) => WebSocketLike {
  let connections = 0;
  return class implements WebSocketLike {
    onopen: WebSocketLike["onopen"] = null;
    onmessage: WebSocketLike["onmessage"] = null;
    onclose: WebSocketLike["onclose"] = null;
    onerror: WebSocketLike["onerror"] = null;
    #ws: WebSocket;
    constructor(url: string) {
      const connection = connections++;
      const ws = this.#ws = new WebSocket(hooks.route?.(url) ?? url);
      hooks.opened?.(ws, connection);
      ws.onopen = (event) => this.onopen?.(event);
      ws.onerror = (event) => this.onerror?.(event);
      ws.onclose = (event) => this.onclose?.(event);
      ws.onmessage = (event) => {
        const data = String(event.data);
        if (!(hooks.deliver?.(data, ws, connection) ?? true)) return;
        this.onmessage?.(hooks.rewrite === undefined ? event : { data: hooks.rewrite(data) });
      };
    }
    send(data: string) {
      hooks.sent?.(data);
      this.#ws.send(data);
    }
    close(code?: number, reason?: string) {
      this.#ws.close(code, reason);
    }
  };
}

/** A WebSocket the test plays the server of by hand: each one made is handed to `made`. */
export function fakeWebSocket(
  made: (socket: WebSocketLike, sent: string[]) => void,
): new (url: string) => WebSocketLike {
  return class implements WebSocketLike {
    onopen: WebSocketLike["onopen"] = null;
    onmessage: WebSocketLike["onmessage"] = null;
    onclose: WebSocketLike["onclose"] = null;
    onerror: WebSocketLike["onerror"] = null;
    readonly #sent: string[] = [];
    constructor() {
      made(this, this.#sent);
    }
    send(data: string) {
      this.#sent.push(data);
    }
    close() {}
  };
}
