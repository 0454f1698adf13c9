/**
 * @module bus/redis/payload
 * The text a Redis bus node publishes on a user's channel, and reading it back.
 *
 * `<origin node id>[@<sent at>]|<flag><frame>`: flag `0` plain, `1` droppable, `2` closing
 * (`BusDelivery.close`, never droppable), `3` / `4` a settings frame with `appearOffline`
 * false / true (never droppable); "sent at" is Redis's clock in ms, base 36, absent
 * when the publisher did not know that clock yet. Node ids contain neither `@` nor `|` (the bus
 * checks), so the first `|` ends the header whatever the frame holds.
 *
 * Nodes of the version before (`<origin>|<0 or 1><frame>`) read this correctly, seeing the
 * stamp as part of a foreign origin and a closing delivery as a plain one; their payloads are
 * read here as unstamped; they deliver a settings frame (`3`, `4`) as a plain one. So a rolling
 * upgrade keeps delivering across nodes.
 */

import type { BusDelivery } from "../bus.ts";

/** The payload of `delivery` from `nodeId`, sent at `sentAt` on Redis's clock. */
export function encodePayload(
  nodeId: string,
  delivery: BusDelivery,
  sentAt: number | undefined,
): string {
  const flag = delivery.close === true
    ? "2"
    : delivery.appearOffline !== undefined
    ? (delivery.appearOffline ? "4" : "3")
    : delivery.droppable
    ? "1"
    : "0";
  const stamp = sentAt === undefined ? "" : `@${Math.round(sentAt).toString(36)}`;
  return `${nodeId}${stamp}|${flag}${delivery.frame}`;
}

/** A payload read back. */
export interface Payload {
  origin: string;
  /** Redis's clock when it was sent; NaN when the publisher did not say. */
  sentAt: number;
  delivery: BusDelivery;
}

/** Reads a payload published for `userId`; undefined when it is not one. */
export function decodePayload(userId: number, message: string): Payload | undefined {
  const bar = message.indexOf("|");
  if (bar < 0 || bar + 1 >= message.length) return undefined;
  const header = message.slice(0, bar);
  const at = header.indexOf("@");
  const flag = message[bar + 1];
  const delivery: BusDelivery = { userId, frame: message.slice(bar + 2), droppable: flag === "1" };
  if (flag === "2") delivery.close = true;
  if (flag === "3" || flag === "4") delivery.appearOffline = flag === "4";
  return {
    origin: at < 0 ? header : header.slice(0, at),
    sentAt: at < 0 ? NaN : parseInt(header.slice(at + 1), 36),
    delivery,
  };
}
