/**
 * @module hub
 * This node's authenticated sockets by user: routing frames to them, presence,
 * and typing indicators that expire. Other nodes are reached only through the bus.
 */

export { Hub, type HubOptions, type Peer, type VisibilityChange } from "./hub.ts";
export { TypingExpiry } from "./typing_expiry.ts";
