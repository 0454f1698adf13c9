/**
 * @module server/ports
 * Whether the listeners' ports can be bound, asked before anything else starts: `main.ts` checks
 * them before it connects to Redis or touches the database, so that a start that cannot listen
 * fails at once and changes nothing (no migrations run for a server that never serves).
 */

/** One address a listener will bind. */
export interface ListenAddress {
  hostname: string;
  /** 0 (any free port) always binds. */
  port: number;
  /** The setting that chose it, for the message (`PORT`, `INTERNAL_PORT`). */
  setting: string;
}

/** An address that cannot be bound, and why. */
export interface BusyAddress extends ListenAddress {
  /** `in use`, `permission denied`, or the system's message. */
  reason: string;
}

/**
 * The addresses of `wanted` that cannot be bound now, found by binding each for a moment. A port
 * taken between this check and the real bind still fails the start, only later.
 */
export function busyAddresses(wanted: readonly ListenAddress[]): BusyAddress[] {
  const busy: BusyAddress[] = [];
  for (const address of wanted) {
    if (address.port === 0) continue;
    try {
      Deno.listen({ hostname: address.hostname, port: address.port }).close();
    } catch (err) {
      busy.push({ ...address, reason: bindFailure(err) });
    }
  }
  return busy;
}

/** `PORT 8443 on 0.0.0.0 is in use`, one clause per address, joined with `; `. */
export function describeBusy(busy: readonly BusyAddress[]): string {
  return busy.map((b) => `${b.setting} ${b.port} on ${b.hostname} is ${b.reason}`).join("; ");
}

function bindFailure(err: unknown): string {
  if (err instanceof Deno.errors.AddrInUse) return "in use";
  if (err instanceof Deno.errors.PermissionDenied) return "not permitted (a port under 1024?)";
  if (err instanceof Deno.errors.AddrNotAvailable) return "not an address of this machine";
  return `not available (${err instanceof Error ? err.message : String(err)})`;
}
