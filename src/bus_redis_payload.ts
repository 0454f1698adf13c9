/**
 * @module bus_redis_payload
 * The text a Redis bus node publishes on a user's channel, and reading it back.
 *
 * `<origin node id>|<flag><sent at>|<frame>`: flag `0` plain, `1` droppable, `2` closing
 * (`BusDelivery.close`, never droppable); "sent at" is Redis's clock in ms, base 36, or empty
 * when the publisher did not know that clock yet. Node ids contain no `|` (the bus checks), so
 * the first two bars split the payload whatever the frame holds.
 */

import type { BusDelivery } from "./bus.ts";

/** The payload of `delivery` from `nodeId`, sent at `sentAt` on Redis's clock. */
export function encodePayload(
  nodeId: string,
  delivery: BusDelivery,
  sentAt: number | undefined,
): string {
  const flag = delivery.close === true ? "2" : delivery.droppable ? "1" : "0";
  const stamp = sentAt === undefined ? "" : Math.round(sentAt).toString(36);
  return `${nodeId}|${flag}${stamp}|${delivery.frame}`;
}

/** A payload read back. */
export interface Payload {
  origin: string;
  /** Redis's clock when it was sent; NaN when the publisher did not know it. */
  sentAt: number;
  delivery: BusDelivery;
}

/** Reads a payload published for `userId`; undefined when it is not one. */
export function decodePayload(userId: number, message: string): Payload | undefined {
  const bar = message.indexOf("|");
  const bar2 = bar < 0 ? -1 : message.indexOf("|", bar + 2);
  if (bar2 < 0) return undefined;
  const flag = message[bar + 1];
  const delivery: BusDelivery = { userId, frame: message.slice(bar2 + 1), droppable: flag === "1" };
  if (flag === "2") delivery.close = true;
  return {
    origin: message.slice(0, bar),
    sentAt: parseInt(message.slice(bar + 2, bar2), 36),
    delivery,
  };
}
