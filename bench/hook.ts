/**
 * @module bench/hook
 * The bench's moderation hook (the `hook` scenario, `lib/hook.ts`): a Deno.serve on 127.0.0.1
 * that reads each call's body and answers `{"action":"allow"}` at once. It checks nothing (no
 * signature, no word list: `examples/moderation_hook.ts` is the hook a studio starts from), so
 * what the scenario measures is the server's side of a call; this process runs apart so its own
 * CPU can be read from `/proc` and shown not to be the bottleneck. Prints one JSON line when it
 * listens (`{"event":"listening","port":…}`); `PORT` (default 0: any free port).
 */

const ALLOW = JSON.stringify({ action: "allow" });

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? "0"),
  onListen({ port }) {
    console.log(JSON.stringify({ event: "listening", port }));
  },
}, async (request) => {
  // The body is read (as a real hook must) so the connection stays reusable.
  await request.arrayBuffer();
  return new Response(ALLOW, { headers: { "content-type": "application/json" } });
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => server.shutdown().then(() => Deno.exit(0)));
}
