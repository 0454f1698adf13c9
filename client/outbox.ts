/**
 * @module outbox
 * The messages `send()` handed over that the server has not acknowledged yet, in send order,
 * whether they went out or not: after every authentication all of them are (re)sent with their
 * original `client_message_id`, which the server stores once (docs/protocol.md, `chat_message`).
 * All runtime code lives inside the class (the demo page embeds its source; see README.md, "Using
 * it without a build step").
 */

import { ChatSendError } from "./errors.ts";
import type { ChatMessage, ErrorFrame, StoredMessage } from "./frames.ts";
import type { ChatLink } from "./link.ts";

interface Outgoing {
  frame: string;
  promise: Promise<ChatMessage>;
  resolve(message: ChatMessage): void;
  reject(error: Error): void;
}

/** Unacknowledged messages by `client_message_id`, each with the promise `send()` returned. */
export class ChatOutbox {
  readonly #messages = new Map<string, Outgoing>();
  readonly #link: ChatLink;
  readonly #maxQueue: number;

  constructor(link: ChatLink, maxQueue: number) {
    this.#link = link;
    this.#maxQueue = maxQueue;
  }

  get size(): number {
    return this.#messages.size;
  }

  /** The frames of every unacknowledged message, in send order. */
  get frames(): string[] {
    return [...this.#messages.values()].map((outgoing) => outgoing.frame);
  }

  has(clientMessageId: string): boolean {
    return this.#messages.has(clientMessageId);
  }

  /**
   * Queues a message and writes it now when the connection is open. An id still pending gets
   * its pending promise (no second frame); rejects with `closed`, or `queue_full` when
   * `maxQueue` messages already wait for a connection.
   */
  add(recipientId: number, text: string, id: string): Promise<ChatMessage> {
    const known = this.#messages.get(id);
    if (known !== undefined) return known.promise;
    const state = this.#link.state;
    if (state === "closed") {
      return Promise.reject(new ChatSendError("closed", "The chat client is closed", id));
    }
    if (state !== "open" && this.#messages.size >= this.#maxQueue) {
      return Promise.reject(
        new ChatSendError(
          "queue_full",
          `Offline queue is full (${this.#maxQueue} messages wait for the connection)`,
          id,
        ),
      );
    }
    let resolve!: (message: ChatMessage) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<ChatMessage>((res, rej) => (resolve = res, reject = rej));
    const frame = JSON.stringify({
      type: "chat_message",
      recipient_user_id: recipientId,
      message_text: text,
      client_message_id: id,
    });
    this.#messages.set(id, { frame, promise, resolve, reject });
    if (state === "open") this.#link.write(frame);
    return promise;
  }

  /**
   * Resolves the `send()` of a stored message of ours (from `message_sent` or a catch-up) with
   * the message as `message_sent` carries it, without the recipient's receipt fields.
   */
  acknowledge(message: ChatMessage | undefined): void {
    const outgoing = this.#take(message?.client_message_id);
    if (outgoing === undefined) return;
    const { is_read: _r, delivered_at: _d, read_at: _a, ...sent } = message as StoredMessage;
    outgoing.resolve(sent);
  }

  /** Rejects the `send()` the server's `error` names; false when it names none of ours. */
  refuse(error: ErrorFrame): boolean {
    const outgoing = this.#take(error.client_message_id);
    outgoing?.reject(new ChatSendError(error.code, error.message, error.client_message_id!));
    return outgoing !== undefined;
  }

  /** The client closed: every unacknowledged `send()` rejects with `closed`. */
  failAll(): void {
    for (const [id, outgoing] of this.#messages) {
      outgoing.reject(
        new ChatSendError(
          "closed",
          "The chat client was closed before the server acknowledged the message",
          id,
        ),
      );
    }
    this.#messages.clear();
  }

  /** Removes and returns the message with this id, if it is still unacknowledged. */
  #take(id: string | undefined): Outgoing | undefined {
    const outgoing = id === undefined ? undefined : this.#messages.get(id);
    if (outgoing !== undefined) this.#messages.delete(id!);
    return outgoing;
  }
}
