/**
 * @module transport
 * How a WebSocket connection is accepted and framed: the `Transport`
 * interface, the default `ws` transport on `node:http` (bounded inbound
 * frames and handshakes), and Deno's native upgrade as an option.
 */

export * from "./transport.ts";
export { wsTransport } from "./ws.ts";
export { nativeTransport } from "./native.ts";
