/**
 * @module build_info
 * What this build is, for `chat_build_info` and the status page: the
 * server's release and the protocol version it speaks (docs/protocol.md).
 */

export const BUILD_INFO = {
  version: "1.2.0-dev",
  protocol: "1.2",
} as const;
