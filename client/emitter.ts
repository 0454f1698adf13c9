/**
 * @module emitter
 * The client's events: handlers by event type, called in the order they subscribed. A handler
 * that throws is logged and does not keep the others from running. `ChatClient.on` and `once`
 * give the handlers their types (`ChatClientEvents`). All runtime code lives inside the class (the
 * demo page embeds its source; see README.md, "Using it without a build step").
 */

import type { UnknownFrame } from "./frames.ts";

/** A handler of some event; its parameter type depends on the event type. */
export type ChatHandler = (event: never) => void;

/** Handlers by event type. */
export class ChatEmitter {
  /** Event types of the client's own, which a server frame of that type must not pose as. */
  static readonly #LOCAL = ["state", "frame", "unread", "synced", "backend_chat_message"];
  readonly #handlers = new Map<string, Set<ChatHandler>>();

  /** Subscribes; returns the function that unsubscribes. */
  on(type: string, handler: ChatHandler): () => void {
    let set = this.#handlers.get(type);
    if (set === undefined) this.#handlers.set(type, set = new Set());
    set.add(handler);
    return () => void set.delete(handler);
  }

  /** Resolves with the next event of `type`. */
  once(type: string): Promise<unknown> {
    return new Promise((resolve) => {
      const off = this.on(type, (event: unknown) => (off(), resolve(event)));
    });
  }

  /** Calls the handlers subscribed now; one subscribed or removed by a handler counts next time. */
  emit(type: string, event: unknown): void {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) {
      try {
        (handler as (event: unknown) => void)(event);
      } catch (err) {
        console.error(`ChatClient: a '${type}' handler threw`, err);
      }
    }
  }

  /** A server frame under its own type (unless named like a client event) and as `frame`. */
  emitFrame(frame: UnknownFrame): void {
    if (!ChatEmitter.#LOCAL.includes(frame.type)) this.emit(frame.type, frame);
    this.emit("frame", frame);
  }
}
