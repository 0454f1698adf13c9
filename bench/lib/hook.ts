/**
 * @module hook
 * The moderation hook's cost (the `hook` scenario): the open loop at a fixed rate against a fresh
 * server process with `MODERATION_URL` set and against one without, alternating (`paired.ts`).
 * The hook is `bench/hook.ts`, its own process answering `{"action":"allow"}` at once, so its CPU
 * is read apart from the server's (`RunContext.sidecarPids`): it must be far from a core, or the
 * hook and not the server would be what the figures measure. Per run: server, Postgres, hook and
 * generator CPU per delivered message, send→`message_sent` (ack) and send→recipient latency, and
 * the server's own count of calls answered and failed (a failure would be stored `unchecked`
 * under the default `MODERATION_FAIL=open`, so it must be 0 for the run to measure the hook).
 */

import { alternatingPairs, freshServerLatency, type OpenLoopOptions } from "./paired.ts";
import { type Child, spawnDeno, stopChild, waitForLogLine } from "./proc.ts";
import type { LatencyResult, RunContext } from "./scenarios.ts";
import type { StartOptions } from "./targets.ts";

const HOOK = new URL("../hook.ts", import.meta.url).pathname;
/** The bench's hook checks no signature; the server requires a secret with a URL. */
const HOOK_SECRET = "bench-moderation-secret";

/** `bench/hook.ts` as a child process on 127.0.0.1. */
export class BenchHook {
  private constructor(readonly child: Child, readonly url: string) {}

  static async start(logDir: string, cpus: string | undefined): Promise<BenchHook> {
    const child = spawnDeno("hook", {
      args: ["run", "--allow-net=127.0.0.1", "--allow-env=PORT", HOOK],
      env: { PORT: "0" },
      logPath: `${logDir}/hook.log`,
      cpus,
    });
    try {
      const line = await waitForLogLine(child, /"event":"listening"/, 30_000);
      return new BenchHook(child, `http://127.0.0.1:${line.port}/moderate`);
    } catch (err) {
      await stopChild(child, 2000);
      throw err;
    }
  }

  stop(): Promise<number> {
    return stopChild(this.child, 5000);
  }
}

export interface HookCostRun {
  hook: boolean;
  latency: LatencyResult;
  loadAvgBefore: number;
}

export interface HookCostOptions extends OpenLoopOptions {
  runs: number;
}

/** Runs with and without `MODERATION_URL`, alternating which goes first; a fresh server each run. */
export function hookCostRuns(
  ctx: RunContext,
  start: StartOptions,
  hook: BenchHook,
  o: HookCostOptions,
  log: (line: string) => void,
): Promise<HookCostRun[]> {
  const measured: RunContext = { ...ctx, sidecarPids: [hook.child.pid] };
  return alternatingPairs(o.runs, async (on, i) => {
    const env = on ? { MODERATION_URL: hook.url, MODERATION_SECRET: HOOK_SECRET } : undefined;
    const { latency, loadAvgBefore } = await freshServerLatency(measured, start, env, o);
    const calls = latency.server?.moderationAllowed ?? NaN;
    const failed = latency.server?.moderationFailed ?? NaN;
    log(
      `hook: run ${i + 1}/${o.runs} ${on ? "with" : "without"} MODERATION_URL: server ` +
        `${latency.targetUsPerMsg} + Postgres ${latency.postgresUsPerMsg} µs/msg, hook ` +
        `${latency.sidecarUsPerMsg} µs/msg, ack p50/p99 ${latency.ack.p50}/${latency.ack.p99} ms` +
        (on ? `, ${calls} calls allowed, ${Number.isNaN(failed) ? 0 : failed} failed` : ""),
    );
    return { hook: on, latency, loadAvgBefore };
  });
}
