/**
 * @module hub/typing_expiry
 * Typing indicators that end by themselves (docs/protocol.md, "Typing"): after
 * `is_typing: true`, a recipient who hears nothing more from that typist
 * within the timeout, or whose typist's last connection on this node closes,
 * is sent `typing` with `is_typing: false`.
 *
 * State is per node: the node that relayed `true` is the one that ends it,
 * so nothing about typing has to cross the bus beyond the frames themselves.
 */

import { serverFrames } from "../protocol/mod.ts";

export class TypingExpiry {
  /** Typist → recipient → the timer that ends the indicator. */
  readonly #active = new Map<number, Map<number, ReturnType<typeof setTimeout>>>();

  constructor(
    private readonly timeoutMs: number,
    /** Sends a typing frame to every connection of the recipient, on every node. */
    private readonly send: (recipientUserId: number, frame: string) => void,
  ) {}

  /** A typing frame from `typist` to `recipient` was relayed. */
  relayed(typist: number, recipient: number, isTyping: boolean): void {
    const timers = this.#active.get(typist);
    const timer = timers?.get(recipient);
    if (timer !== undefined) clearTimeout(timer);
    if (!isTyping) return this.#forget(typist, recipient);
    const byRecipient = timers ?? new Map();
    byRecipient.set(
      recipient,
      setTimeout(() => {
        this.#forget(typist, recipient);
        this.send(recipient, serverFrames.typing(typist, false));
      }, this.timeoutMs),
    );
    this.#active.set(typist, byRecipient);
  }

  /** The typist's last connection here closed: every indicator they started ends now. */
  typistGone(typist: number): void {
    const timers = this.#active.get(typist);
    if (timers === undefined) return;
    this.#active.delete(typist);
    for (const [recipient, timer] of timers) {
      clearTimeout(timer);
      this.send(recipient, serverFrames.typing(typist, false));
    }
  }

  /** Shutdown: ends every indicator now, so none outlives the node. */
  close(): void {
    for (const typist of [...this.#active.keys()]) this.typistGone(typist);
  }

  #forget(typist: number, recipient: number): void {
    const timers = this.#active.get(typist);
    timers?.delete(recipient);
    if (timers?.size === 0) this.#active.delete(typist);
  }
}
