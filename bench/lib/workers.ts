/**
 * @module workers
 * The load-generator processes as seen from the orchestrator: spawn, send a
 * command, await its one-line reply (with a deadline), stop.
 */

import { type Child, spawnProcess, stopChild } from "./proc.ts";
import { type Command, lines } from "./commands.ts";

export class LoadWorker {
  readonly #child: Child;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #replies: AsyncGenerator<string>;
  #busy = false;

  private constructor(readonly index: number, child: Child) {
    this.#child = child;
    this.#writer = child.process.stdin.getWriter();
    this.#replies = lines(child.process.stdout);
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Starts worker `index` (the built generator `binary`, on `cpus`) and waits for its `ready`. */
  static async start(
    index: number,
    binary: string,
    logPath: string,
    cpus: string | undefined,
  ): Promise<LoadWorker> {
    const child = spawnProcess(`loadgen-${index}`, binary, {
      args: [],
      env: {},
      logPath,
      control: true,
      cpus,
    });
    const worker = new LoadWorker(index, child);
    await worker.#next(60_000);
    return worker;
  }

  /** Sends `cmd` and resolves with the reply; rejects on an `error` reply or after `timeoutMs`. */
  async request<T>(cmd: Command, timeoutMs: number): Promise<T> {
    if (this.#busy) throw new Error(`loadgen-${this.index} is busy`);
    this.#busy = true;
    try {
      await this.#writer.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
      const reply = await this.#next(timeoutMs) as T & { error?: string };
      if (typeof reply.error === "string") {
        throw new Error(`loadgen-${this.index} ${cmd.cmd}: ${reply.error}`);
      }
      return reply;
    } finally {
      this.#busy = false;
    }
  }

  async #next(timeoutMs: number): Promise<unknown> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`loadgen-${this.index}: no reply in ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const next = await Promise.race([this.#replies.next(), timeout]);
      if (next.done) throw new Error(`loadgen-${this.index} exited (log: ${this.#child.logPath})`);
      return JSON.parse(next.value);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Asks the worker to exit, then makes sure it has. */
  async stop(): Promise<void> {
    try {
      await this.request({ cmd: "exit" }, 2000);
    } catch { /* it is killed below */ }
    await this.#writer.close().catch(() => {});
    await stopChild(this.#child, 3000);
  }
}
