/**
 * @module server
 * The listeners and their routes: the public WebSocket and health endpoints,
 * the internal API (`/notify`, `/disconnect`, `/presence`, `/metrics`), the
 * periodic check for deactivated users, the container's health probe, and the check that the
 * listeners' ports are free before anything else starts.
 */

export { type ChatServer, type ChatServerOptions, startChatServer } from "./server.ts";
export { healthcheck } from "./healthcheck.ts";
export { type BusyAddress, busyAddresses, describeBusy, type ListenAddress } from "./ports.ts";
