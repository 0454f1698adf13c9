/**
 * @module dev/dev_record
 * Which `deno task dev` owns an embedded database directory right now, so that a second
 * `deno task dev` on the same directory can say "another dev server is running, here it is"
 * instead of pointing at its PostgreSQL. The record is a small JSON file inside the data
 * directory, written once the server listens and removed before the database stops; a record
 * whose process is gone counts as absent. It holds no secret, only whether the dev-only one is
 * in use (then anyone may mint tokens for that server with `deno task token --dev`).
 */

export interface DevRecord {
  pid: number;
  /** The public port (demo page and WebSocket). */
  port: number;
  /** True when the server signs with the dev-only secret (AUTH_SECRET was unset). */
  devSecret: boolean;
}

const FILE = "geobeasts-dev-server.json";

export async function writeDevRecord(dataDir: string, record: DevRecord): Promise<void> {
  await Deno.writeTextFile(`${dataDir}/${FILE}`, JSON.stringify(record) + "\n");
}

/** The record of a dev server that is still alive, else undefined. */
export async function readDevRecord(dataDir: string): Promise<DevRecord | undefined> {
  let record: Partial<DevRecord>;
  try {
    record = JSON.parse(await Deno.readTextFile(`${dataDir}/${FILE}`));
  } catch {
    return undefined; // none, unreadable or half-written: nothing to say about it
  }
  const { pid, port, devSecret } = record;
  if (!Number.isSafeInteger(pid) || !Number.isSafeInteger(port) || typeof devSecret !== "boolean") {
    return undefined;
  }
  try {
    Deno.kill(pid!, "SIGCONT"); // harmless to a running process; throws when there is none
  } catch {
    return undefined;
  }
  return { pid: pid!, port: port!, devSecret };
}

/** Removes this process's record (never another's). */
export async function removeDevRecord(dataDir: string): Promise<void> {
  const record = await readDevRecord(dataDir);
  if (record?.pid !== Deno.pid) return;
  await Deno.remove(`${dataDir}/${FILE}`).catch(() => {});
}
