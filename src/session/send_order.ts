/**
 * @module session/send_order
 * The order of a sender's messages to one friend while the moderation hook
 * checks them (docs/protocol.md, "Moderation hook"): each message takes a
 * turn of its (sender, recipient) pair when its frame is handled, so in the
 * order sent; the hook calls run at once, side by side, but a message is
 * queued for storage only once every earlier turn of its pair has queued its
 * own (or given up). The writer commits in queue order, so messages are
 * stored, answered and delivered in the order sent whatever order the hook
 * answers in.
 *
 * It also knows which `(sender, client_message_id)` keys are being checked on
 * this node, so a retry that arrives meanwhile waits for the first frame's
 * outcome instead of calling the hook a second time.
 *
 * One instance for every session of a node; a pair's entry exists only
 * while it has turns out.
 */

/** One message's place in its pair's order. */
export interface Turn {
  /** Settles once every earlier turn of the pair is done. */
  readonly ready: Promise<void>;
  /** This message is queued for storage, or will not be: the next turn may go. Idempotent. */
  done(): void;
}

export class SendOrder<Outcome> {
  readonly #tails = new Map<string, Promise<void>>();
  readonly #checking = new Map<string, CheckingEntry<Outcome>>();

  /** The next turn of `senderUserId` → `recipientUserId`, after every turn taken before. */
  take(senderUserId: number, recipientUserId: number): Turn {
    const key = `${senderUserId}:${recipientUserId}`;
    const ready = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => release = resolve);
    const tail = ready.then(() => mine);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return { ready, done: release };
  }

  /**
   * The outcome of the message `senderUserId` is checking with
   * `clientMessageId` now, when it has the same recipient and text; undefined
   * when none is.
   */
  checking(
    senderUserId: number,
    clientMessageId: string,
    recipientUserId: number,
    messageText: string,
  ): Promise<Outcome> | undefined {
    const entry = this.#checking.get(`${senderUserId}:${clientMessageId}`);
    if (entry === undefined) return undefined;
    return entry.recipientUserId === recipientUserId && entry.messageText === messageText
      ? entry.outcome
      : undefined;
  }

  /** Records that `outcome` is the message's (see `checking`) until it settles. */
  check(
    senderUserId: number,
    clientMessageId: string,
    recipientUserId: number,
    messageText: string,
    outcome: Promise<Outcome>,
  ): void {
    const key = `${senderUserId}:${clientMessageId}`;
    const entry = { recipientUserId, messageText, outcome };
    this.#checking.set(key, entry);
    const forget = () => {
      if (this.#checking.get(key) === entry) this.#checking.delete(key);
    };
    outcome.then(forget, forget);
  }

  /** Pairs with turns out and messages being checked (for tests). */
  get size(): { pairs: number; checking: number } {
    return { pairs: this.#tails.size, checking: this.#checking.size };
  }
}

interface CheckingEntry<Outcome> {
  recipientUserId: number;
  messageText: string;
  outcome: Promise<Outcome>;
}
