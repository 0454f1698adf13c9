/**
 * @module flood
 * An abusive peer for the memory tests: it opens a WebSocket and streams one
 * never-ending fragmented text message at the server, counting the bytes the
 * server accepted (every write that completed) until the server cuts it off.
 *
 * "Accepted" is what the server let in: bytes it read plus what sits in the
 * two kernels' buffers on loopback. A server that stops reading when it refuses
 * the message makes the writes stall once those buffers are full; one that
 * keeps reading and discarding lets them run on. Neither depends on the
 * allocator, unlike the server's RSS.
 */

import { encodeFrame, RawWs } from "../raw_ws.ts";

export const MiB = 1024 * 1024;

export interface FloodOptions {
  /** Payload bytes of each frame (the first is a text frame, the rest continuations). */
  fragment?: number;
  /** A write that has not completed for this long counts as stalled: the flood stops. */
  stallMs?: number;
  /** The flood stops after this many bytes whatever happens, so the test always ends. */
  capBytes?: number;
  /** `false` sends unmasked frames, a protocol violation (close 1002). */
  mask?: boolean;
}

export interface FloodResult {
  /** Bytes of frames whose writes completed. */
  accepted: number;
  /** The close code of the server's close frame; `undefined` when none arrived. */
  closeCode: number | undefined;
  /** Why the flood stopped. */
  ended: "write_failed" | "stalled" | "cap";
}

/** Floods `port` with one fragmented message that never ends; resolves once it is cut off. */
export async function floodFragments(
  port: number,
  options: FloodOptions = {},
): Promise<FloodResult> {
  const { fragment = MiB, stallMs = 5000, capBytes = 1024 * MiB, mask = true } = options;
  const raw = await RawWs.connect(port, "/ws");
  // Read from the start, so the close frame is taken in as soon as it comes.
  const closeCode = raw.readClose();
  const payload = new Uint8Array(fragment).fill(0x61);
  // Encoded once: masking a MiB in JavaScript per frame would slow the peer, not the server.
  const first = encodeFrame({ opcode: 1, payload, fin: false, mask });
  const continuation = encodeFrame({ opcode: 0, payload, fin: false, mask });
  let accepted = 0;
  let ended: FloodResult["ended"] = "cap";
  try {
    for (let frame = first; accepted < capBytes; frame = continuation) {
      const outcome = await writeFrame(raw.conn, frame, stallMs, (n) => accepted += n);
      if (outcome !== "written") {
        ended = outcome;
        break;
      }
    }
  } finally {
    // A close frame already on its way still counts: give it a moment before hanging up.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([closeCode, new Promise((resolve) => timer = setTimeout(resolve, 2000))]);
    clearTimeout(timer);
    raw.close();
  }
  return { accepted, closeCode: await closeCode, ended };
}

/** Writes all of `frame`, reporting each completed write; stops at an error or a stall. */
async function writeFrame(
  conn: Deno.Conn,
  frame: Uint8Array,
  stallMs: number,
  onWritten: (bytes: number) => void,
): Promise<"written" | "write_failed" | "stalled"> {
  for (let offset = 0; offset < frame.length;) {
    const write = conn.write(frame.subarray(offset));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<"stalled">((resolve) => {
      timer = setTimeout(() => resolve("stalled"), stallMs);
    });
    const n = await Promise.race([write.catch(() => "write_failed" as const), stalled]);
    clearTimeout(timer);
    if (n === "stalled") {
      write.catch(() => {}); // rejects when the caller closes the connection
      return "stalled";
    }
    if (n === "write_failed") return "write_failed";
    onWritten(n);
    offset += n;
  }
  return "written";
}
