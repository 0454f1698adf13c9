/**
 * @module sdk_socket
 * A real WebSocket for the client SDK (its `WebSocket` option) that a test steers: where each
 * connection goes, and which incoming frames reach the SDK.
 */

import type { WebSocketLike } from "../../client/chat_client.ts";

export interface SocketHooks {
  /** Where a connection the SDK opens to `url` goes (a refusing port plays a network down). */
  route?(url: string): string;
  /** Told of each socket opened, numbered from 0. */
  opened?(ws: WebSocket, connection: number): void;
  /** Whether an incoming frame reaches the SDK (`ws` lets the test cut the connection instead). */
  deliver?(data: string, ws: WebSocket, connection: number): boolean;
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
        if (hooks.deliver?.(String(event.data), ws, connection) ?? true) this.onmessage?.(event);
      };
    }
    send(data: string) {
      this.#ws.send(data);
    }
    close(code?: number, reason?: string) {
      this.#ws.close(code, reason);
    }
  };
}
