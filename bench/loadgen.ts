/**
 * @module loadgen
 * One load-generator process. The orchestrator starts several and drives
 * them with JSON-line commands (`lib/commands.ts`) on stdin; each holds its
 * own connections and answers on stdout. Pairs of friends (and a hub with
 * its friends) always live in the same process, so a latency is measured on
 * one clock.
 *
 * The client is Deno's native `WebSocket` or the `ws` package's client,
 * chosen per command. Hot frames (`chat_message`, `message_sent` in the
 * throughput run) are recognised by their prefix instead of parsed: both the
 * server and the relay serialise `type` first.
 */

// @ts-types="npm:@types/ws@^8.18.1"
import { WebSocket as WsClient } from "ws";
import { importTokenKey, signToken } from "../src/token.ts";
import {
  absNow,
  type ClientKind,
  type CloseAllCommand,
  type CloseAllReply,
  type Command,
  type ConnectCommand,
  type ConnectReply,
  type LatencyCommand,
  type LatencyReply,
  lines,
  type PresenceCommand,
  type PresenceReply,
  type ThroughputCommand,
  type ThroughputReply,
} from "./lib/commands.ts";
import { partnerOf } from "./lib/layout.ts";

interface Conn {
  send(text: string): void;
  close(): void;
}

/** What a run does with the frames its connections receive. */
interface Mode {
  chat(user: User, text: string): void;
  sent(user: User, text: string): void;
  presence(user: User, frame: Record<string, unknown>): void;
  error(user: User, frame: Record<string, unknown>): void;
}

const IDLE: Mode = { chat() {}, sent() {}, presence() {}, error() {} };
let mode: Mode = IDLE;

/** One connection of one benchmark user. */
class User {
  conn: Conn | undefined;
  open = false;
  authed = false;
  closed = false;
  inflight = 0;
  seq = 0;
  /** Settled with `null` once `authenticated` arrives, or with why not. */
  onAuth: ((failure: string | null) => void) | undefined;
  readonly #closed = Promise.withResolvers<void>();

  constructor(readonly id: number) {}

  get closedPromise(): Promise<void> {
    return this.#closed.promise;
  }

  connect(kind: ClientKind, url: string, onOpen: () => void): void {
    const opened = () => {
      this.open = true;
      onOpen();
    };
    const closed = (code: number) => {
      this.open = false;
      this.closed = true;
      this.onAuth?.(`closed_${code}`);
      this.#closed.resolve();
    };
    if (kind === "native") {
      const ws = new WebSocket(url);
      ws.onopen = opened;
      ws.onmessage = (event) => onFrame(this, event.data as string);
      ws.onclose = (event) => closed(event.code);
      ws.onerror = () => {};
      this.conn = {
        send: (text) => {
          if (this.open) ws.send(text);
        },
        close: () => {
          try {
            ws.close();
          } catch { /* already closing */ }
        },
      };
    } else {
      const ws = new WsClient(url, { perMessageDeflate: false });
      ws.on("open", opened);
      ws.on("message", (data) => onFrame(this, String(data)));
      ws.on("close", closed);
      ws.on("error", () => {});
      this.conn = {
        send: (text) => {
          if (this.open) ws.send(text);
        },
        close: () => ws.close(),
      };
    }
  }

  close(): void {
    if (this.closed) return;
    if (this.conn === undefined) {
      this.closed = true;
      this.#closed.resolve();
      return;
    }
    this.conn.close();
  }
}

function onFrame(user: User, text: string): void {
  if (text.startsWith('{"type":"chat_message"')) return mode.chat(user, text);
  if (text.startsWith('{"type":"message_sent"')) return mode.sent(user, text);
  let frame: Record<string, unknown>;
  try {
    frame = JSON.parse(text);
  } catch {
    return;
  }
  switch (frame.type) {
    case "authenticated":
      user.authed = true;
      user.onAuth?.(null);
      return;
    case "auth_error":
      user.onAuth?.("auth_error");
      return;
    case "presence":
      return mode.presence(user, frame);
    case "error":
      if (!user.authed) user.onAuth?.(`error_${frame.code}`);
      return mode.error(user, frame);
  }
}

/** This worker's authenticated connections, by user id. */
const users = new Map<number, User>();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));
const sleepUntil = (t: number) => sleep(t - absNow());
const count = (record: Record<string, number>, key: string) => record[key] = (record[key] ?? 0) + 1;
const round = (ms: number) => Math.round(ms * 1000) / 1000;
/** Makes `client_message_id`s unique across runs (the server deduplicates on them). */
const runTag = () => Math.random().toString(36).slice(2, 8);

/** Pair users of this worker whose partner is connected here too. */
function pairSenders(): User[] {
  return [...users.values()].filter((u) => u.authed && users.get(partnerOf(u.id))?.authed);
}

async function connect(cmd: ConnectCommand): Promise<ConnectReply> {
  const key = await importTokenKey(cmd.secret);
  const nowS = Math.floor(Date.now() / 1000);
  const tokens = await Promise.all(cmd.userIds.map((id) => signToken(key, id, nowS)));
  const failures: Record<string, number> = {};
  const latencies: number[] = [];
  let firstStart = Infinity;
  let lastDone = 0;
  let next = 0;
  const one = async (i: number) => {
    const id = cmd.userIds[i]!;
    const frame = JSON.stringify({ type: "authenticate", auth_token: tokens[i] });
    const user = new User(id);
    const start = absNow();
    firstStart = Math.min(firstStart, start);
    const failure = await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), cmd.timeoutMs);
      user.onAuth = (why) => {
        clearTimeout(timer);
        resolve(why);
      };
      user.connect(cmd.client, cmd.urls[(id - 1) % cmd.urls.length]!, () => user.conn!.send(frame));
    });
    user.onAuth = undefined;
    const done = absNow();
    if (failure === null) {
      users.set(id, user);
      latencies.push(round(done - start));
      lastDone = Math.max(lastDone, done);
    } else {
      count(failures, failure);
      user.close();
    }
  };
  const lanes = Array.from({ length: Math.min(cmd.concurrency, cmd.userIds.length) }, async () => {
    while (next < cmd.userIds.length) await one(next++);
  });
  await Promise.all(lanes);
  return {
    connected: latencies.length,
    failed: cmd.userIds.length - latencies.length,
    failures,
    firstStart,
    lastDone,
    latencies,
  };
}

const THROUGHPUT_TEXT = "The quick brown fox jumps over the lazy dog, benchmark message";

async function throughput(cmd: ThroughputCommand): Promise<ThroughputReply> {
  const senders = pairSenders();
  const tag = runTag();
  const errors: Record<string, number> = {};
  let sending = false;
  let sent = 0;
  let acked = 0;
  let delivered = 0;
  const sendOne = (u: User) => {
    u.seq++;
    u.inflight++;
    sent++;
    u.conn!.send(
      `{"type":"chat_message","recipient_user_id":${
        partnerOf(u.id)
      },"message_text":"${THROUGHPUT_TEXT} ${u.seq}","client_message_id":"${tag}-${u.seq}"}`,
    );
  };
  const answered = (u: User) => {
    u.inflight--;
    if (sending) sendOne(u);
  };
  mode = {
    chat() {
      const now = absNow();
      if (now >= cmd.t1 && now < cmd.t2) delivered++;
    },
    sent(u) {
      acked++;
      answered(u);
    },
    presence() {},
    error(u, frame) {
      count(errors, String(frame.code));
      if (frame.client_message_id !== undefined) answered(u);
    },
  };
  for (const u of senders) u.inflight = 0;
  await sleepUntil(cmd.t0);
  sending = true;
  for (const u of senders) for (let i = 0; i < cmd.window; i++) sendOne(u);
  await sleepUntil(cmd.t2);
  sending = false;
  const unacked = () => senders.reduce((sum, u) => sum + u.inflight, 0);
  const deadline = absNow() + cmd.drainMs;
  while (unacked() > 0 && absNow() < deadline) await sleep(10);
  mode = IDLE;
  return { senders: senders.length, sent, acked, delivered, errors, unackedAtEnd: unacked() };
}

async function latency(cmd: LatencyCommand): Promise<LatencyReply> {
  const senders = pairSenders();
  const tag = runTag();
  const errors: Record<string, number> = {};
  const reply: LatencyReply = {
    senders: senders.length,
    sent: 0,
    recipient: [],
    ack: [],
    recipientFromSchedule: [],
    lag: [],
    undelivered: 0,
    unacked: 0,
    errors,
  };
  if (senders.length === 0) return reply;
  const interval = 1000 / cmd.ratePerS;
  let expected = 0;
  let k = 0;
  /** The scheduled and the actual send time of a message, from its text. */
  const times = (messageText: unknown) => {
    const parts = String(messageText).split(" ");
    return { scheduled: Number(parts[1]), actual: Number(parts[2]) };
  };
  const inWindow = (scheduled: number) => scheduled >= cmd.t1 && scheduled < cmd.t2;
  mode = {
    chat(_u, text) {
      const now = absNow();
      const { scheduled, actual } = times(JSON.parse(text).message_text);
      if (!inWindow(scheduled)) return;
      reply.recipient.push(round(now - actual));
      reply.recipientFromSchedule.push(round(now - scheduled));
    },
    sent(_u, text) {
      const now = absNow();
      const { scheduled, actual } = times(JSON.parse(text).data.message_text);
      if (inWindow(scheduled)) reply.ack.push(round(now - actual));
    },
    presence() {},
    error(_u, frame) {
      count(errors, String(frame.code));
    },
  };
  const tick = () => {
    const now = absNow();
    while (true) {
      const scheduled = cmd.t0 + k * interval;
      if (scheduled > now || scheduled >= cmd.t2) break;
      const u = senders[k % senders.length]!;
      k++;
      const actual = absNow();
      u.conn!.send(
        `{"type":"chat_message","recipient_user_id":${
          partnerOf(u.id)
        },"message_text":"lat ${scheduled} ${actual} brown fox","client_message_id":"${tag}-${k}"}`,
      );
      reply.sent++;
      if (inWindow(scheduled)) {
        expected++;
        reply.lag.push(round(actual - scheduled));
      }
    }
  };
  await sleepUntil(cmd.t0);
  const timer = setInterval(tick, 1);
  await sleepUntil(cmd.t2);
  clearInterval(timer);
  tick();
  const deadline = absNow() + cmd.drainMs;
  while (
    (reply.recipient.length < expected || reply.ack.length < expected) && absNow() < deadline
  ) {
    await sleep(10);
  }
  mode = IDLE;
  reply.undelivered = expected - reply.recipient.length;
  reply.unacked = expected - reply.ack.length;
  return reply;
}

interface HubState {
  phase: "online" | "offline" | "idle";
  received: number;
  done: ((at: number) => void) | undefined;
}

async function presence(cmd: PresenceCommand): Promise<PresenceReply> {
  const key = await importTokenKey(cmd.secret);
  const errors: Record<string, number> = {};
  const reply: PresenceReply = {
    cycles: 0,
    online: [],
    onlineFromConnect: [],
    offline: [],
    frames: 0,
    timeouts: 0,
    errors,
  };
  const hubs = new Map<number, HubState>(
    cmd.hubs.map((id) => [id, { phase: "idle", received: 0, done: undefined }]),
  );
  mode = {
    chat() {},
    sent() {},
    presence(_u, frame) {
      const now = absNow();
      if (now >= cmd.t1 && now < cmd.t2) reply.frames++;
      const hub = hubs.get(Number(frame.user_id));
      if (hub === undefined || frame.status !== hub.phase) return;
      if (++hub.received === cmd.friendsPerHub) hub.done?.(now);
    },
    error(_u, frame) {
      count(errors, String(frame.code));
    },
  };
  /** Resolves with the time the phase completed, or `undefined` after the phase timeout. */
  const phase = (hub: HubState, name: "online" | "offline") => {
    hub.phase = name;
    hub.received = 0;
    const { promise, resolve } = Promise.withResolvers<number | undefined>();
    const timer = setTimeout(() => resolve(undefined), cmd.phaseTimeoutMs);
    hub.done = (at) => {
      clearTimeout(timer);
      resolve(at);
    };
    return promise;
  };
  const inWindow = (t: number) => t >= cmd.t1 && t < cmd.t2;
  const cycle = async (id: number) => {
    const hub = hubs.get(id)!;
    while (absNow() < cmd.t2) {
      const token = await signToken(key, id, Math.floor(Date.now() / 1000));
      const user = new User(id);
      const online = phase(hub, "online");
      const connectStart = absNow();
      let authSent = 0;
      user.connect(cmd.client, cmd.url, () => {
        authSent = absNow();
        user.conn!.send(JSON.stringify({ type: "authenticate", auth_token: token }));
      });
      const onlineAt = await online;
      if (onlineAt === undefined) {
        reply.timeouts++;
        user.close();
        await Promise.race([user.closedPromise, sleep(cmd.phaseTimeoutMs)]);
        continue;
      }
      if (inWindow(authSent)) {
        reply.online.push(round(onlineAt - authSent));
        reply.onlineFromConnect.push(round(onlineAt - connectStart));
      }
      const offline = phase(hub, "offline");
      const closeStart = absNow();
      user.close();
      const offlineAt = await offline;
      if (offlineAt === undefined) reply.timeouts++;
      else if (inWindow(closeStart)) reply.offline.push(round(offlineAt - closeStart));
      await Promise.race([user.closedPromise, sleep(cmd.phaseTimeoutMs)]);
      hub.phase = "idle";
      reply.cycles++;
    }
  };
  await sleepUntil(cmd.t0);
  await Promise.all(cmd.hubs.map(cycle));
  mode = IDLE;
  return reply;
}

async function closeAll(cmd: CloseAllCommand): Promise<CloseAllReply> {
  const all = [...users.values()];
  users.clear();
  for (const user of all) user.close();
  const closed = Promise.all(all.map((u) => u.closedPromise));
  await Promise.race([closed, sleep(cmd.timeoutMs)]);
  const remaining = all.filter((u) => !u.closed).length;
  return { closed: all.length - remaining, remaining };
}

async function handle(cmd: Command): Promise<unknown> {
  switch (cmd.cmd) {
    case "connect":
      return await connect(cmd);
    case "throughput":
      return await throughput(cmd);
    case "latency":
      return await latency(cmd);
    case "presence":
      return await presence(cmd);
    case "closeAll":
      return await closeAll(cmd);
    case "exit":
      return {};
  }
}

if (import.meta.main) {
  console.log(JSON.stringify({ ready: true }));
  for await (const line of lines(Deno.stdin.readable)) {
    if (line.trim() === "") continue;
    const cmd = JSON.parse(line) as Command;
    let reply: unknown;
    try {
      reply = await handle(cmd);
    } catch (err) {
      reply = { error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
    }
    console.log(JSON.stringify(reply));
    if (cmd.cmd === "exit") break;
  }
  Deno.exit(0);
}
