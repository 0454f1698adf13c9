/** @module raw_ws A hand-written WebSocket client on a raw TCP socket, for frames no real client sends. */

import { Buffer } from "node:buffer";

const encoder = new TextEncoder();

/** One frame to encode; `mask: false` makes the protocol violation a server must refuse. */
export interface FrameSpec {
  opcode: number;
  payload: Uint8Array;
  fin?: boolean;
  mask?: boolean;
}

/** Encodes one client frame (masked unless `mask: false`), RFC 6455 section 5.2. */
export function encodeFrame({ opcode, payload, fin = true, mask = true }: FrameSpec): Uint8Array {
  const len = payload.length;
  const extra = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = 2 + extra + (mask ? 4 : 0);
  const frame = new Uint8Array(head + len);
  const view = new DataView(frame.buffer);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  frame[1] = (mask ? 0x80 : 0) | (extra === 0 ? len : extra === 2 ? 126 : 127);
  if (extra === 2) view.setUint16(2, len);
  if (extra === 8) view.setBigUint64(2, BigInt(len));
  if (!mask) {
    frame.set(payload, head);
    return frame;
  }
  const key = crypto.getRandomValues(new Uint8Array(4));
  frame.set(key, head - 4);
  for (let i = 0; i < len; i++) frame[head + i] = payload[i]! ^ key[i & 3]!;
  return frame;
}

/** A WebSocket opened by hand; the caller owns it and must call `close()`. */
export class RawWs {
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  #closed = false;
  #closing: Promise<number | undefined> | undefined;

  private constructor(readonly conn: Deno.Conn, leftover: Uint8Array<ArrayBuffer>) {
    this.#buf = leftover;
  }

  /** Opens a TCP connection to `port` and completes the upgrade handshake on `path`. */
  static async connect(port: number, path = "/"): Promise<RawWs> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
      await writeAll(
        conn,
        encoder.encode(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
            `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
      );
      let data = new Uint8Array(0);
      for (;;) {
        const end = indexOfCrlfCrlf(data);
        if (end >= 0) {
          const head = new TextDecoder().decode(data.subarray(0, end));
          if (!head.startsWith("HTTP/1.1 101")) throw new Error(`Handshake refused: ${head}`);
          return new RawWs(conn, data.slice(end + 4));
        }
        const chunk = await readSome(conn);
        if (chunk === null) throw new Error("Connection closed during handshake");
        data = concat(data, chunk);
      }
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  /** Writes one encoded frame; rejects once the server has dropped the connection. */
  send(frame: FrameSpec): Promise<void> {
    return writeAll(this.conn, encodeFrame(frame));
  }

  /**
   * Reads server frames until a close frame and returns its code (1005 when it
   * carries none), or `undefined` when the TCP connection ends first. Every
   * call returns the same promise.
   */
  readClose(): Promise<number | undefined> {
    return this.#closing ??= this.#readClose();
  }

  async #readClose(): Promise<number | undefined> {
    for (;;) {
      const frame = this.#takeFrame();
      if (frame?.opcode === 8) {
        const p = frame.payload;
        return p.length >= 2 ? (p[0]! << 8) | p[1]! : 1005;
      }
      if (frame) continue;
      const chunk = await readSome(this.conn).catch(() => null);
      if (chunk === null) return undefined;
      this.#buf = concat(this.#buf, chunk);
    }
  }

  /** Closes the TCP connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }

  /** Removes and returns one whole frame from the buffer, if there is one. */
  #takeFrame(): { opcode: number; payload: Uint8Array } | undefined {
    const b = this.#buf;
    if (b.length < 2) return undefined;
    let len = b[1]! & 0x7f;
    let off = 2;
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = view.getUint16(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      len = Number(view.getBigUint64(2));
      off = 10;
    }
    if (b.length < off + len) return undefined;
    this.#buf = b.slice(off + len);
    return { opcode: b[0]! & 0x0f, payload: b.subarray(off, off + len) };
  }
}

async function readSome(conn: Deno.Conn): Promise<Uint8Array | null> {
  const buf = new Uint8Array(64 * 1024);
  const n = await conn.read(buf);
  return n === null ? null : buf.subarray(0, n);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOfCrlfCrlf(data: Uint8Array): number {
  for (let i = 0; i + 3 < data.length; i++) {
    if (data[i] === 13 && data[i + 1] === 10 && data[i + 2] === 13 && data[i + 3] === 10) return i;
  }
  return -1;
}
