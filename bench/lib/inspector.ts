/**
 * @module inspector
 * A minimal Chrome DevTools Protocol client for a target started with
 * `--inspect=127.0.0.1:0`: force a full GC and read the JS heap, so the
 * capacity run can tell retained memory from garbage not yet collected.
 */

export class Inspector {
  readonly #ws: WebSocket;
  readonly #pending = new Map<number, (result: Record<string, unknown>) => void>();
  #id = 0;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      if (typeof message.id === "number") this.#pending.get(message.id)?.(message.result ?? {});
    };
  }

  /** Connects to the inspector WebSocket at `url`. */
  static open(url: string, timeoutMs = 5000): Promise<Inspector> {
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`inspector ${url}: no answer`)), timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve(new Inspector(ws));
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error(`inspector ${url}: cannot connect`));
      };
    });
  }

  call(
    method: string,
    params: Record<string, unknown> = {},
    timeoutMs = 30_000,
  ): Promise<Record<string, unknown>> {
    const id = ++this.#id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`inspector: ${method} timed out`));
      }, timeoutMs);
      this.#pending.set(id, (result) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(result);
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Runs a full garbage collection, then returns the used JS heap in bytes. */
  async gcAndHeapUsed(): Promise<number> {
    await this.call("HeapProfiler.collectGarbage");
    const usage = await this.call("Runtime.getHeapUsage");
    return Number(usage.usedSize);
  }

  close(): void {
    this.#ws.close();
  }
}
