/**
 * @module outbox
 * The messages `send()` handed over that the server has not acknowledged yet, in send order,
 * whether they went out or not (docs/protocol.md, `chat_message`).
 *
 * Messages leave one at a time, in send order: the next is written once the one before it was
 * answered, and only when the pacer (the connection's chat rate, `authenticated.limits`) has a
 * token for it. A message the server still refuses `rate_limited` stays at the head of the queue
 * and is written again, with its `client_message_id`, after the refusal's `retry_after_ms`; the
 * messages after it wait. So a sender's messages are stored in the order they were sent, and a
 * burst is paced instead of refused. After every authentication the unanswered ones go out again
 * the same way, with their original `client_message_id`, which the server stores once. All
 * runtime code lives inside the class (the demo page embeds its source; see README.md, "Using it
 * without a build step").
 */

import { ChatSendError } from "./errors.ts";
import type { ChatLimits, ChatMessage, ErrorFrame, StoredMessage } from "./frames.ts";
import type { ChatLink } from "./link.ts";
import type { Timers } from "./options.ts";
import { ChatPacer } from "./pacer.ts";

interface Outgoing {
  frame: string;
  promise: Promise<ChatMessage>;
  resolve(message: ChatMessage): void;
  reject(error: Error): void;
}

/** Unacknowledged messages by `client_message_id`, each with the promise `send()` returned. */
export class ChatOutbox {
  /** In send order (a `Map` keeps insertion order): the first is the next to go. */
  readonly #messages = new Map<string, Outgoing>();
  readonly #link: ChatLink;
  readonly #maxQueue: number;
  readonly #timers: Timers;
  readonly #pacer: ChatPacer;
  /** The message written on this connection and not answered yet. */
  #inFlight: string | undefined;
  /** The wait for the pacer (or a refusal's `retry_after_ms`) before the next write. */
  #timer: unknown;

  constructor(link: ChatLink, maxQueue: number, timers: Timers, now: () => number) {
    this.#link = link;
    this.#maxQueue = maxQueue;
    this.#timers = timers;
    this.#pacer = new ChatPacer(now);
  }

  get size(): number {
    return this.#messages.size;
  }

  has(clientMessageId: string): boolean {
    return this.#messages.has(clientMessageId);
  }

  /**
   * Queues a message; it goes out in its turn while the connection is open. An id still pending
   * gets its pending promise (no second frame); rejects with `closed`, or `queue_full` when
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
    this.pump();
    return promise;
  }

  /**
   * A new session (before the state is `open`): nothing of ours is in flight on it, and its
   * chat bucket is full. `limits` is `authenticated.limits` (absent before v1.2: no pacing).
   */
  signedIn(limits: ChatLimits | undefined): void {
    this.#stop();
    this.#pacer.reset(limits);
  }

  /** Writes the next message when its turn has come: nothing in flight, a token in hand. */
  pump(): void {
    if (this.#inFlight !== undefined || this.#timer !== undefined) return;
    if (this.#link.state !== "open") return;
    const [next] = this.#messages;
    if (next === undefined) return;
    const wait = this.#pacer.wait();
    if (wait > 0) {
      this.#timer = this.#timers.setTimeout(() => {
        this.#timer = undefined;
        this.pump();
      }, wait);
      return;
    }
    this.#pacer.take();
    this.#inFlight = next[0];
    this.#link.write(next[1].frame);
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
    this.pump();
  }

  /**
   * True when the server's `error` is a `rate_limited` refusal of one of our messages that
   * carries `retry_after_ms`: `refuse` will send it again by itself.
   */
  retries(error: ErrorFrame): boolean {
    return error.code === "rate_limited" && typeof error.retry_after_ms === "number" &&
      error.client_message_id !== undefined && this.#messages.has(error.client_message_id);
  }

  /**
   * The server's `error` for one of our messages: a `rate_limited` one with `retry_after_ms` is
   * written again after that wait (the messages after it wait too); any other rejects its
   * `send()`. False when it names none of ours.
   */
  refuse(error: ErrorFrame): boolean {
    const id = error.client_message_id;
    if (this.retries(error)) {
      this.#pacer.refused(error.retry_after_ms!);
      if (id === this.#inFlight) this.#inFlight = undefined;
      this.pump();
      return true;
    }
    const outgoing = this.#take(id);
    outgoing?.reject(new ChatSendError(error.code, error.message, id!));
    this.pump();
    return outgoing !== undefined;
  }

  /** The connection is gone: nothing is in flight; the rest goes after the next sign-in. */
  lost(): void {
    this.#stop();
  }

  /** The client closed: every unacknowledged `send()` rejects with `closed`. */
  failAll(): void {
    this.#stop();
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

  #stop(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#inFlight = undefined;
  }

  /** Removes and returns the message with this id, if it is still unacknowledged. */
  #take(id: string | undefined): Outgoing | undefined {
    const outgoing = id === undefined ? undefined : this.#messages.get(id);
    if (outgoing === undefined) return undefined;
    this.#messages.delete(id!);
    if (id === this.#inFlight) this.#inFlight = undefined;
    return outgoing;
  }
}
