/**
 * @module session/outbox
 * What one connection sends, with backpressure: a droppable frame (typing,
 * presence) is shed above `SEND_BUFFER_SHED_BYTES` queued on the socket, and
 * a frame that would take the queued bytes past `SEND_BUFFER_MAX_BYTES`
 * closes the peer as a slow consumer instead of being queued: a frame's
 * bytes are counted before it is queued, so one large frame cannot take the
 * queue far past the cap. While the session joins, frames routed to it are
 * held and sent after the `authenticated` answer.
 */

import { CloseCode, utf8Length } from "../protocol/mod.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { WsConnection } from "../transport/mod.ts";

/** Frames held while joining, at most; a join takes a few round trips to the bus. */
const MAX_HELD_FRAMES = 1000;
/** How long a slow consumer's close may wait behind its full buffer before the socket is cut. */
const SLOW_CLOSE_GRACE_MS = 2000;

export interface OutboxOptions {
  limits: { sendBufferMaxBytes: number; sendBufferShedBytes: number };
  metrics: Metrics;
  logger: Logger;
}

export class Outbox {
  #held: [frame: string, droppable: boolean][] | undefined;
  #heldBytes = 0;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(
    private readonly conn: WsConnection,
    private readonly options: OutboxOptions,
    /** The connection's user for log lines (`userId` 0 before authentication). */
    private readonly user: { readonly userId: number },
  ) {}

  /**
   * Sends now, unless the socket is closed, shedding or closing as the buffer
   * requires. A frame goes into an empty buffer whatever its size (one frame
   * is the least a peer must take), else only while the queue stays within
   * the cap: the bytes queued never pass `SEND_BUFFER_MAX_BYTES` by more than
   * one frame's.
   */
  send(frame: string, droppable: boolean): void {
    if (this.#closed) return;
    const buffered = this.conn.bufferedAmount;
    const { limits, metrics } = this.options;
    if (buffered > limits.sendBufferMaxBytes) return this.#slowConsumer();
    if (droppable && buffered > limits.sendBufferShedBytes) return metrics.frameDropped();
    if (buffered > 0 && buffered + utf8Length(frame) > limits.sendBufferMaxBytes) {
      return this.#slowConsumer();
    }
    this.conn.send(frame);
    metrics.frameOut(frame);
  }

  /**
   * A frame routed to the user: held while holding, else sent. What is held
   * goes to the socket at `release`, so it is bounded like the socket's queue:
   * a frame that would take it past `SEND_BUFFER_MAX_BYTES` (or
   * `MAX_HELD_FRAMES`) closes the peer as a slow consumer, or is shed.
   */
  deliver(frame: string, droppable: boolean): void {
    if (this.#held === undefined) return this.send(frame, droppable);
    const bytes = utf8Length(frame);
    if (
      this.#held.length < MAX_HELD_FRAMES &&
      this.#heldBytes + bytes <= this.options.limits.sendBufferMaxBytes
    ) {
      this.#held.push([frame, droppable]);
      this.#heldBytes += bytes;
    } else if (!droppable) this.#slowConsumer();
  }

  /** From now on, routed frames wait for `release`. */
  hold(): void {
    this.#held ??= [];
  }

  /** Sends the held frames in order and stops holding. */
  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    this.#heldBytes = 0;
    for (const [frame, droppable] of held) this.send(frame, droppable);
  }

  /** The connection closed: nothing more is sent, nothing is held. */
  closed(): void {
    this.#closed = true;
    this.#held = undefined;
    this.#heldBytes = 0;
    clearTimeout(this.#killTimer);
    this.#killTimer = undefined;
  }

  #slowConsumer(): void {
    if (this.#killTimer !== undefined || this.#closed) return;
    this.options.metrics.slowConsumerClosed();
    this.options.logger.warn("slow_consumer_closed", { user_id: this.user.userId || null });
    this.conn.close(CloseCode.tryAgainLater, "slow consumer");
    // The close frame waits behind the full buffer; do not hold the memory for long.
    this.#killTimer = setTimeout(() => this.conn.terminate(), SLOW_CLOSE_GRACE_MS);
  }
}
