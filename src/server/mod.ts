/**
 * @module server
 * The listeners and their routes: the public WebSocket and health endpoints,
 * the internal API (`/notify`, `/disconnect`, `/presence`, `/metrics`), the
 * periodic check for deactivated users, and the container's health probe.
 */

export { type ChatServer, type ChatServerOptions, startChatServer } from "./server.ts";
export { healthcheck } from "./healthcheck.ts";
