/**
 * @module redis
 * What the cluster scenario needs of the local Redis, through `redis-cli`:
 * whether it answers, its PID (to read its CPU time), and removing this
 * run's keys (the run's own prefix) afterwards.
 */

async function cli(url: string, args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("redis-cli", {
      args: ["-u", url, ...args],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** The Redis server's PID when it answers at `url`, else `undefined`. */
export async function redisPid(url: string): Promise<number | undefined> {
  if ((await cli(url, ["ping"]))?.trim() !== "PONG") return undefined;
  const info = await cli(url, ["info", "server"]);
  const pid = Number(/process_id:(\d+)/.exec(info ?? "")?.[1]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Deletes every key under `prefix` (bounded: at most 100 rounds of 1,000 keys). */
export async function deleteKeys(url: string, prefix: string): Promise<number> {
  let deleted = 0;
  for (let round = 0; round < 100; round++) {
    const keys = (await cli(url, ["--scan", "--pattern", `${prefix}*`, "--count", "1000"]))
      ?.split("\n").filter((k) => k !== "").slice(0, 1000) ?? [];
    if (keys.length === 0) break;
    await cli(url, ["del", ...keys]);
    deleted += keys.length;
  }
  return deleted;
}
