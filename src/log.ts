/**
 * @module log
 * The one logger: JSON lines on stderr, one object per line, filtered by level.
 *
 * Callers pass an event name and flat fields. Nothing secret and no message
 * text is ever passed at info level or above; `JSON.stringify` escapes
 * control characters, so a field can never forge a second line.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

/** A logger writing lines at `level` and above through `write` (stderr by default). */
export function createLogger(
  level: LogLevel,
  write: (line: string) => void = writeStderr,
  now: () => number = Date.now,
): Logger {
  const min = RANK[level];
  const emit = (lvl: LogLevel) => (event: string, fields?: LogFields) => {
    if (RANK[lvl] < min) return;
    write(JSON.stringify({ level: lvl, time: new Date(now()).toISOString(), event, ...fields }));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A logger that drops everything (tests that do not look at logs). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

const encoder = new TextEncoder();
function writeStderr(line: string): void {
  const bytes = encoder.encode(line + "\n");
  for (let off = 0; off < bytes.length;) off += Deno.stderr.writeSync(bytes.subarray(off));
}

/** The message of an unknown thrown value, for a log field. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
