/**
 * @module bus/redis/subscriptions
 * The Redis bus's shard channel subscriptions: one subscriber connection per primary, each with
 * the health check of `link.ts` (a PING every second answered within the deadline,
 * else the socket is reset and ioredis reconnects), and every wanted channel subscribed
 * (`SSUBSCRIBE`) on the connection of the primary serving its slot.
 *
 * A subscription is lost without the connection closing in three ways, each handled:
 * - the slot moves (a migration, a failover): the server pushes `sunsubscribe`, or answers an
 *   `SSUBSCRIBE` with MOVED. Either makes ioredis emit "moved": the channels of that connection
 *   count as unconfirmed, the topology is asked for, every channel is placed on the primary now
 *   serving its slot, and unconfirmed channels are subscribed again every second until Redis
 *   confirms them;
 * - the primary fails or freezes: its connection closes or misses the health check's deadline,
 *   the topology is asked for until a replica serves the slots, and the channels move there;
 * - anything else (a server that drops a subscription and says nothing): every 5 s an audit
 *   asks each quiet connection how many shard channels it holds (`SUNSUBSCRIBE` of a channel
 *   never subscribed, in a slot the primary serves, answers with that count and changes
 *   nothing) and compares with what Redis confirmed; a difference is logged
 *   (`bus_subscription_lost`) and the connection is reset, so everything is subscribed again.
 *
 * A channel counts as confirmed (`isConfirmed`: the publisher may then skip a frame only this
 * node would receive) only once Redis answered its `SSUBSCRIBE` on the current connection of
 * its current primary, for the latest `subscribe` of it. A frame arriving on a connection that
 * no longer serves its channel (a demoted primary still forwarding) is dropped, so nothing is
 * delivered twice across a move.
 */

import type { Redis } from "ioredis";
import { RedisLink, RedisLinkDownError, type RedisLinkOptions } from "./link.ts";
import type { BusParts, ClientOptions, LinkHealth, ShardAddress } from "./shards.ts";
import { errorMessage } from "../../log.ts";

/** Channels per SSUBSCRIBE when subscribing many at once. */
const SUBSCRIBE_CHUNK = 1000;
const TICK_MS = 1000;
const AUDIT_EVERY_MS = 5000;

export interface SubscriptionsOptions extends BusParts {
  /** Options of every subscriber connection (the address is the shard's). */
  clientOptions: ClientOptions;
  health: LinkHealth;
  /** A message on a wanted channel, from the primary `primary` (for its clock). */
  onMessage(channel: string, message: string, primary: string): void;
  /** Told when a connection finished subscribing everything (readiness may change). */
  onSubscribed(): void;
}

class Subscriber {
  readonly channels = new Set<string>();
  readonly confirmed = new Set<string>();
  /** (Un)subscribe commands awaiting their reply; the audit waits until there are none. */
  busy = 0;
  /** Every channel placed here was sent since the connection became ready. */
  resubscribed = false;
  lastAudit = performance.now();
  readonly link: RedisLink;

  constructor(readonly address: ShardAddress, readonly conn: Redis, health: RedisLinkOptions) {
    this.link = new RedisLink(conn, {
      ...health,
      onHealth: (healthy, reason) => {
        // Whatever it had subscribed no longer counts until the next connection has it.
        if (!healthy) this.#reset();
        health.onHealth(healthy, reason);
      },
    });
  }

  #reset(): void {
    this.resubscribed = false;
    this.confirmed.clear();
  }
}

export class Subscriptions {
  readonly #options: SubscriptionsOptions;
  /** Wanted channel → its slot and the number of the `subscribe` call that wanted it. */
  readonly #wanted = new Map<string, { slot: number; call: number }>();
  readonly #subscribers = new Map<string, Subscriber>();
  /** Wanted channel → the subscriber it is placed on. */
  readonly #where = new Map<string, Subscriber>();
  #calls = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  constructor(options: SubscriptionsOptions) {
    this.#options = options;
  }

  /** Opens a subscriber per primary; rejects when one does not become healthy in time. */
  async start(timeoutMs: number): Promise<void> {
    this.place();
    const deadline = performance.now() + timeoutMs;
    for (const sub of this.#subscribers.values()) {
      while (!sub.link.healthy || !sub.resubscribed) {
        if (performance.now() > deadline) {
          throw new RedisLinkDownError(`subscriber of ${sub.address.key} did not connect`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  async subscribe(channel: string, slot: number): Promise<void> {
    const call = ++this.#calls;
    this.#wanted.set(channel, { slot, call });
    const sub = this.#place(channel, slot);
    // When not ready, the "ready" handler subscribes every channel placed there.
    if (sub !== undefined && sub.resubscribed && sub.link.healthy) await this.#send(sub, [channel]);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.#wanted.delete(channel);
    const sub = this.#where.get(channel);
    this.#where.delete(channel);
    if (sub === undefined) return;
    sub.channels.delete(channel);
    sub.confirmed.delete(channel);
    await this.#unsend(sub, [channel]);
  }

  isConfirmed(channel: string): boolean {
    return this.#where.get(channel)?.confirmed.has(channel) ?? false;
  }

  /** Every connection subscribed what is placed on it, and every channel has a primary. */
  allSubscribed(): boolean {
    for (const sub of this.#subscribers.values()) if (!sub.resubscribed) return false;
    return this.#where.size === this.#wanted.size;
  }

  links(): RedisLink[] {
    return [...this.#subscribers.values()].map((sub) => sub.link);
  }

  /**
   * Keeps a subscriber per primary and every wanted channel on the primary serving its slot
   * now (after a topology change); subscribes what moved.
   */
  place(): void {
    if (this.#stopped) return;
    const primaries = new Set<string>();
    for (const address of this.#options.shards.primaries()) {
      primaries.add(address.key);
      this.#subscriber(address);
    }
    const moved = new Map<Subscriber, string[]>();
    for (const [channel, { slot }] of this.#wanted) {
      const before = this.#where.get(channel);
      const sub = this.#place(channel, slot);
      if (sub !== undefined && sub !== before) moved.set(sub, [...(moved.get(sub) ?? []), channel]);
    }
    for (const [key, sub] of this.#subscribers) {
      if (primaries.has(key)) continue;
      for (const channel of sub.channels) this.#where.delete(channel);
      this.#subscribers.delete(key);
      sub.link.stop();
      sub.conn.disconnect();
    }
    for (const [sub, channels] of moved) {
      if (sub.resubscribed && sub.link.healthy) void this.#send(sub, channels);
    }
  }

  /** Closes every subscriber (QUIT where connected); `abandon` drops them at once. */
  async close(abandon = false): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    const subs = [...this.#subscribers.values()];
    this.#subscribers.clear();
    this.#where.clear();
    this.#wanted.clear();
    for (const sub of subs) sub.link.stop();
    await Promise.all(subs.map(async (sub) => {
      try {
        if (!abandon && sub.conn.status === "ready") await sub.conn.quit();
      } catch {
        // Closing anyway.
      } finally {
        sub.conn.disconnect();
      }
    }));
  }

  /** Puts `channel` on the subscriber of the primary serving `slot` now. */
  #place(channel: string, slot: number): Subscriber | undefined {
    const address = this.#options.shards.primaryOf(slot);
    const target = address === undefined ? undefined : this.#subscriber(address);
    const current = this.#where.get(channel);
    if (current === target) return target;
    if (current !== undefined) {
      current.channels.delete(channel);
      current.confirmed.delete(channel);
      // Redis unsubscribed it already if the slot moved; a demoted primary may not have.
      void this.#unsend(current, [channel]);
    }
    if (target === undefined) {
      this.#where.delete(channel);
    } else {
      target.channels.add(channel);
      this.#where.set(channel, target);
    }
    return target;
  }

  #subscriber(address: ShardAddress): Subscriber {
    const existing = this.#subscribers.get(address.key);
    if (existing !== undefined) return existing;
    const conn = address.open({ ...this.#options.clientOptions, lazyConnect: true });
    const health = this.#options.health(`subscriber ${address.key}`, false);
    const sub = new Subscriber(address, conn, {
      ...health,
      onHealth: (healthy, reason) => {
        if (!healthy) this.#options.shards.refresh();
        health.onHealth(healthy, reason);
      },
    });
    conn.on("ready", () => void this.#resubscribe(sub));
    conn.on("smessage", (channel: string, message: string) => {
      if (this.#where.get(channel) === sub) this.#options.onMessage(channel, message, address.key);
    });
    conn.on("moved", () => {
      sub.confirmed.clear(); // which one moved is not said: the next tick asks again for all
      this.#options.shards.refresh();
    });
    conn.on("error", () => {}); // the link says when it is down and why
    this.#subscribers.set(address.key, sub);
    conn.connect().catch(() => {}); // ioredis retries; the link's health says how it goes
    return sub;
  }

  async #resubscribe(sub: Subscriber): Promise<void> {
    sub.resubscribed = false;
    sub.confirmed.clear();
    await this.#send(sub, [...sub.channels]);
    if (!sub.link.healthy || this.#subscribers.get(sub.address.key) !== sub) return;
    sub.resubscribed = true;
    this.#options.onSubscribed();
  }

  /** SSUBSCRIBEs `channels` on `sub`, a command per batch key (slot) and chunk. */
  async #send(sub: Subscriber, channels: string[]): Promise<void> {
    const batches = new Map<number, [string, number][]>();
    for (const channel of channels) {
      const wanted = this.#wanted.get(channel);
      if (wanted === undefined) continue;
      const key = this.#options.shards.batchKey(wanted.slot);
      batches.set(key, [...(batches.get(key) ?? []), [channel, wanted.call]]);
    }
    const sends: Promise<void>[] = [];
    for (const batch of batches.values()) {
      for (let i = 0; i < batch.length; i += SUBSCRIBE_CHUNK) {
        const chunk = batch.slice(i, i + SUBSCRIBE_CHUNK);
        sends.push(
          this.#command(sub, () => sub.conn.ssubscribe(...chunk.map(([c]) => c))).then(
            () => {
              for (const [channel, call] of chunk) {
                if (this.#wanted.get(channel)?.call === call && sub.channels.has(channel)) {
                  sub.confirmed.add(channel);
                }
              }
            },
            (err) => this.#failed("bus_subscribe_failed", err),
          ),
        );
      }
    }
    await Promise.all(sends);
  }

  async #unsend(sub: Subscriber, channels: string[]): Promise<void> {
    if (!sub.link.healthy) return; // a new connection has no subscriptions
    try {
      await this.#command(sub, () => sub.conn.sunsubscribe(...channels));
    } catch (err) {
      this.#failed("bus_unsubscribe_failed", err);
    }
  }

  async #command<T>(sub: Subscriber, command: () => Promise<T>): Promise<T> {
    sub.busy++;
    try {
      return await sub.link.run(command);
    } finally {
      sub.busy--;
    }
  }

  #failed(event: string, err: unknown): void {
    if (err instanceof RedisLinkDownError || this.#stopped) return; // the next "ready" retries
    if (/^(MOVED|ASK) /.test(errorMessage(err))) {
      this.#options.shards.refresh(); // placed again once the new topology is known
      return;
    }
    this.#options.logger.warn(event, { error: errorMessage(err) });
  }

  /** Subscribes again what Redis has not confirmed; audits quiet connections now and then. */
  #tick(): void {
    for (const sub of this.#subscribers.values()) {
      if (!sub.resubscribed || !sub.link.healthy || sub.busy > 0) continue;
      const unconfirmed = [...sub.channels].filter((channel) => !sub.confirmed.has(channel));
      if (unconfirmed.length > 0) {
        void this.#send(sub, unconfirmed);
      } else if (sub.channels.size > 0 && performance.now() - sub.lastAudit >= AUDIT_EVERY_MS) {
        sub.lastAudit = performance.now();
        void this.#audit(sub);
      }
    }
  }

  async #audit(sub: Subscriber): Promise<void> {
    const [sample] = sub.channels;
    if (sample === undefined) return;
    const expected = sub.confirmed.size;
    let held: number;
    try {
      // A channel in the sample's slot that nobody subscribes: the reply is the count.
      held = Number(await this.#command(sub, () => sub.conn.sunsubscribe(`${sample}:audit`)));
    } catch (err) {
      this.#failed("bus_audit_failed", err);
      return;
    }
    if (held === expected || sub.confirmed.size !== expected || !sub.link.healthy) return;
    this.#options.logger.warn("bus_subscription_lost", {
      primary: sub.address.key,
      expected,
      held,
    });
    sub.resubscribed = false;
    sub.confirmed.clear();
    sub.conn.disconnect(true); // a clean connection, everything subscribed again on "ready"
  }
}
