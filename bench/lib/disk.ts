/**
 * @module disk
 * The disk's own commit latency: 8 kB written and `fdatasync`ed in a loop,
 * next to PostgreSQL's data directory when it is readable (else in the bench's
 * log directory, which the report names). Every message the server
 * acknowledges waits for one WAL `fdatasync`, so a stall here is a stall of
 * every message queued behind it: p99 send→recipient cannot be below the
 * longest stalls the disk has in a measured window.
 */

export interface DiskSyncProbe {
  dir: string;
  durationS: number;
  syncs: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** Syncs over 50 ms in the window. */
  over50Ms: number;
}

export async function probeDiskSync(dirs: string[], durationMs: number): Promise<DiskSyncProbe> {
  let lastError: unknown;
  for (const dir of dirs) {
    const path = `${dir}/gb-bench-fsync-${crypto.randomUUID().slice(0, 8)}.tmp`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { write: true, create: true, truncate: true });
    } catch (err) {
      lastError = err;
      continue;
    }
    const block = new Uint8Array(8192).fill(120);
    const lat: number[] = [];
    try {
      const end = performance.now() + durationMs;
      for (let i = 0; performance.now() < end; i++) {
        await file.seek((i % 1000) * 8192, Deno.SeekMode.Start);
        await file.write(block);
        const t = performance.now();
        await file.syncData();
        lat.push(performance.now() - t);
      }
    } finally {
      file.close();
      await Deno.remove(path).catch(() => {});
    }
    lat.sort((a, b) => a - b);
    const at = (q: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * q))] ?? NaN;
    const r = (x: number) => Math.round(x * 1000) / 1000;
    return {
      dir,
      durationS: durationMs / 1000,
      syncs: lat.length,
      p50Ms: r(at(0.5)),
      p99Ms: r(at(0.99)),
      p999Ms: r(at(0.999)),
      maxMs: r(lat.at(-1) ?? NaN),
      over50Ms: lat.filter((x) => x > 50).length,
    };
  }
  throw new Error(`bench: no directory to probe the disk in: ${lastError}`);
}
