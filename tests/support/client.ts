/**
 * @module client
 * A WebSocket test client that queues every frame it receives, so a test
 * can wait for "the next frame of type X" and assert what was not received;
 * and signing in as a user with a token the test signs.
 */

import { importTokenKey, signToken } from "../../src/token.ts";
import { sleep, within } from "./wait.ts";

/** The secret the servers of the tests sign tokens with. */
export const TEST_SECRET = "test-secret-for-geobeasts-chat-32b+";

/** A token for `userId` signed with `secret`, issued at `timestamp` (Unix seconds, now by default). */
export async function testToken(
  userId: number,
  secret = TEST_SECRET,
  timestamp = Math.floor(Date.now() / 1000),
): Promise<string> {
  return signToken(await importTokenKey(secret), userId, timestamp);
}

/** Sends `authenticate` with `token` on `client` and consumes the `authenticated` answer. */
export async function signIn(client: TestClient, token: string): Promise<TestClient> {
  client.send({ type: "authenticate", auth_token: token });
  await client.next("authenticated");
  return client;
}

/** Opens a connection to `url` and signs in as `userId` with a token signed with `secret`. */
export async function connectAs(
  url: string,
  userId: number,
  secret = TEST_SECRET,
): Promise<TestClient> {
  return signIn(await TestClient.open(url), await testToken(userId, secret));
}

export type Frame = Record<string, unknown> & { type: string };

export class TestClient {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: (() => void)[] = [];
  #closedResolve!: (value: { code: number; reason: string }) => void;
  closeCode: number | undefined;

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => (this.#closedResolve = resolve));
    ws.onmessage = (event) => {
      this.frames.push(JSON.parse(String(event.data)));
      this.#wake();
    };
    ws.onclose = (event) => {
      this.closeCode = event.code;
      this.#closedResolve({ code: event.code, reason: event.reason });
      this.#wake();
    };
    ws.onerror = () => {};
  }

  /**
   * Opens a connection to `url` (with extra request `headers`, e.g. a proxy's
   * `X-Forwarded-For`); rejects when the upgrade is refused.
   */
  static open(
    url: string,
    protocols?: string[],
    headers?: Record<string, string>,
  ): Promise<TestClient> {
    const ws = headers === undefined
      ? new WebSocket(url, protocols)
      : new WebSocket(url, { headers, ...(protocols === undefined ? {} : { protocols }) });
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(new TestClient(ws));
      ws.onerror = () => reject(new Error(`could not connect to ${url}`));
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Removes and returns the first queued frame of `type` (one of them; any type when omitted). */
  async next(type?: string | string[], timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    const wanted = (f: Frame) =>
      type === undefined || (Array.isArray(type) ? type.includes(f.type) : f.type === type);
    while (true) {
      const i = this.frames.findIndex(wanted);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.closeCode !== undefined) {
        throw new Error(`closed (${this.closeCode}) before a '${type ?? "any"}' frame arrived`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `no '${type ?? "any"}' frame in ${timeoutMs} ms; queued: ${JSON.stringify(this.frames)}`,
        );
      }
      await this.#wait(left);
    }
  }

  /** Waits `ms` and returns the frames of `type` that arrived meanwhile (and removes them). */
  async drainFor(ms: number, type?: string): Promise<Frame[]> {
    await sleep(ms);
    const matching = this.frames.filter((f) => type === undefined || f.type === type);
    for (const f of matching) this.frames.splice(this.frames.indexOf(f), 1);
    return matching;
  }

  /** Resolves with the close code once the server has closed the connection. */
  async closedWith(timeoutMs = 5000): Promise<number> {
    return (await within(timeoutMs, this.closed, "the server's close")).code;
  }

  /** Closes from the client side and waits for the close to complete. */
  async close(code = 1000): Promise<void> {
    if (this.closeCode === undefined && this.ws.readyState !== WebSocket.CLOSED) {
      this.ws.close(code);
    }
    await this.closed;
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const waiter = () => done();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#waiters.push(waiter);
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
  }
}

/**
 * `frame` (a `presence`) without its `last_seen_at`, for comparing: v1.2 puts the time the user
 * was last seen on `offline`, and it must then be an ISO 8601 time in UTC.
 */
export function withoutLastSeen(frame: Frame): Frame {
  const { last_seen_at: at, ...rest } = frame;
  if (frame.status === "offline") {
    if (typeof at !== "string" || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(at)) {
      throw new Error(`offline presence without an ISO last_seen_at: ${JSON.stringify(frame)}`);
    }
  }
  return rest as Frame;
}
