/**
 * @module protocol
 * The wire format (docs/protocol.md): client frames parsed and validated
 * (`client_frames.ts`, the only place incoming JSON is parsed), server frames
 * built by typed functions (`server_frames.ts`), and the stable codes
 * (`codes.ts`).
 */

export * from "./codes.ts";
export * from "./client_frames.ts";
export * from "./server_frames.ts";
