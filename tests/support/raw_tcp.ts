/**
 * @module raw_tcp
 * A raw TCP client for tests of what the server does before (or instead of)
 * an HTTP exchange: half-sent headers, silent sockets, whatever it answers.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A raw TCP connection that reads everything until the server ends it. */
export interface Tcp {
  /** Resolves with all the server sent, once the server closed (or reset) the connection. */
  ended: Promise<string>;
  isEnded(): boolean;
  /** Writes `text`; false once the connection is gone. */
  write(text: string): Promise<boolean>;
  close(): void;
}

/** Connects to 127.0.0.1:`port` and writes `first` (when given). */
export async function openTcp(port: number, first = ""): Promise<Tcp> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let ended = false;
  let closed = false;
  const write = (text: string) => conn.write(encoder.encode(text)).then(() => true, () => false);
  if (first !== "") await write(first);
  const reading = (async () => {
    let received = "";
    const buf = new Uint8Array(16 * 1024);
    try {
      for (let n; (n = await conn.read(buf)) !== null;) {
        received += decoder.decode(buf.subarray(0, n));
      }
    } catch { /* reset by the server, or closed by the test */ }
    ended = true;
    return received;
  })();
  return {
    ended: reading,
    isEnded: () => ended,
    write,
    close() {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}
