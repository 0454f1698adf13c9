/**
 * Settings (docs/protocol.md, "Settings: mute, do-not-disturb, appear offline, last seen"), on
 * real servers and a real database: a change is stored and reaches every connection of the user,
 * `authenticated` carries the settings (expired ones left out) and when offline friends were last
 * seen, appearing offline hides the user from friends on every node (presence, the online list,
 * typing) while `GET /presence` tells the truth, and bad frames are refused.
 */

import assert from "node:assert/strict";
import { ChatClient, type ChatSendError } from "../client/chat_client.ts";
import { type Frame, type TestClient, withoutLastSeen } from "./support/client.ts";
import { CLUSTER_KINDS, nodesTest } from "./support/cluster.ts";
import { type TestServer, withTestServer } from "./support/server.ts";
import { eventually } from "./support/wait.ts";

const NOTIFY_SECRET = "settings-test-notify";

/** An ISO time `hours` from now, as a client sends it. */
const hoursAhead = (hours: number) => new Date(Date.now() + hours * 3_600_000).toISOString();

/** The `settings` object of the next `settings_updated` that `client` received. */
async function nextSettings(client: TestClient): Promise<Record<string, unknown>> {
  return (await client.next("settings_updated")).settings as Record<string, unknown>;
}

/** The next frame of `types` that `client` received: what came first of them. */
function nextOf(client: TestClient, ...types: string[]): Promise<Frame> {
  return client.next(types);
}

Deno.test("a settings change is stored and reaches every connection of the user; authenticated carries it", async () => {
  await withTestServer({ users: [1, 2, 3], friends: [[1, 2], [3, 1]] }, async (t) => {
    const phone = await t.connectAs(1);
    const laptop = await t.connectAs(1);
    const muteUntil = hoursAhead(2);
    const dndUntil = hoursAhead(8);
    phone.send({
      type: "settings",
      mute: { friend_user_id: 2, until: muteUntil },
      dnd_until: dndUntil,
    });
    const expected = { muted: { "2": muteUntil }, dnd_until: dndUntil, appear_offline: false };
    const seqs = [];
    for (const device of [phone, laptop]) {
      const frame = await device.next("settings_updated");
      assert.deepEqual(frame.settings, expected);
      seqs.push(frame.seq);
    }
    // One update of the user's sequence, the same for every device, stored with its body.
    assert.equal(typeof seqs[0], "number");
    assert.equal(seqs[1], seqs[0]);
    const [update] = await t.db.sql`
      select kind, body from chat_updates where user_id = 1 and seq = ${seqs[0] as number}`;
    assert.deepEqual({ ...update }, { kind: "settings_updated", body: expected });
    const mutes = await t.db.sql`
      select user_id::int, friend_user_id::int, until from chat_mutes`;
    assert.deepEqual(mutes.map((m) => ({ ...m, until: m.until.toISOString() })), [
      { user_id: 1, friend_user_id: 2, until: muteUntil },
    ]);
    const fresh = await t.connect();
    fresh.send({ type: "authenticate", auth_token: await t.token(1) });
    assert.deepEqual((await fresh.next("authenticated")).settings, expected);

    // Only the named setting changes; an unmute deletes the row.
    laptop.send({ type: "settings", mute: { friend_user_id: 2, until: null } });
    for (const device of [phone, laptop, fresh]) {
      const frame = await device.next("settings_updated");
      assert.deepEqual(frame.settings, { muted: {}, dnd_until: dndUntil, appear_offline: false });
      assert.equal(frame.seq, (seqs[0] as number) + 1);
    }
    assert.equal((await t.db.sql`select count(*)::int as n from chat_mutes`)[0]!.n, 0);
    // Settings of another user are their own.
    const carol = await t.connectAs(3);
    carol.send({ type: "settings", dnd_until: null });
    assert.deepEqual((await carol.next("settings_updated")).settings, {
      muted: {},
      dnd_until: null,
      appear_offline: false,
    });
  });
});

Deno.test("authenticated leaves out expired mutes and an expired do-not-disturb", async () => {
  await withTestServer({ users: [1, 2, 3], friends: [[1, 2], [3, 1]] }, async (t) => {
    const later = hoursAhead(1);
    await t.db.sql`
      insert into chat_user_settings (user_id, dnd_until) values (1, now() - interval '1 minute')`;
    await t.db.sql`
      insert into chat_mutes (user_id, friend_user_id, until)
      values (1, 2, now() - interval '1 second'), (1, 3, ${later})`;
    const alice = await t.connect();
    alice.send({ type: "authenticate", auth_token: await t.token(1) });
    assert.deepEqual((await alice.next("authenticated")).settings, {
      muted: { "3": later },
      dnd_until: null,
      appear_offline: false,
    });
  });
});

Deno.test("bad settings frames are refused with the field's error and change nothing", async () => {
  await withTestServer({ users: [1, 2, 4], friends: [[1, 2]] }, async (t) => {
    const anonymous = await t.connect();
    anonymous.send({ type: "settings", appear_offline: true });
    assert.equal((await anonymous.next("error")).code, "not_authenticated");
    const alice = await t.connectAs(1);
    const cases: [unknown, string][] = [
      [{}, "missing_fields"],
      [{ mute: { friend_user_id: 2 } }, "missing_fields"],
      [{ mute: { until: null } }, "missing_fields"],
      [{ mute: "2" }, "invalid_field"],
      [{ mute: null }, "invalid_field"],
      [{ mute: { friend_user_id: 0, until: null } }, "invalid_field"],
      [{ mute: { friend_user_id: 2, until: "tomorrow" } }, "invalid_field"],
      [{ mute: { friend_user_id: 2, until: "2030-01-01T10:00:00" } }, "invalid_field"],
      [{ mute: { friend_user_id: 2, until: 1893456000000 } }, "invalid_field"],
      [{ mute: { friend_user_id: 1, until: hoursAhead(1) } }, "invalid_field"],
      [{ mute: { friend_user_id: 4, until: hoursAhead(1) } }, "not_friends"],
      [{ dnd_until: "2030-02-30T10:00:00Z" }, "invalid_field"],
      [{ dnd_until: 5 }, "invalid_field"],
      [{ dnd_until: "10000-01-01T00:00:00Z" }, "invalid_field"],
      [{ appear_offline: "yes" }, "invalid_field"],
      [{ appear_offline: null }, "invalid_field"],
      [{ appear_offline: true, dnd_until: "soon" }, "invalid_field"],
    ];
    for (const [fields, code] of cases) {
      alice.send({ type: "settings", ...(fields as object) });
      const error = await alice.next(["error", "settings_updated"]);
      assert.equal(error.type, "error", JSON.stringify(fields));
      assert.equal(error.code, code, JSON.stringify(fields));
      assert.equal(typeof error.message, "string");
    }
    const rows = await t.db.sql`
      select (select count(*) from chat_user_settings)::int as settings,
             (select count(*) from chat_mutes)::int as mutes`;
    assert.deepEqual({ ...rows[0] }, { settings: 0, mutes: 0 });
    // An unmute of someone who is not a friend (any more) is accepted.
    alice.send({ type: "settings", mute: { friend_user_id: 4, until: null } });
    assert.deepEqual((await nextSettings(alice)).muted, {});
  });
});

for (const kind of CLUSTER_KINDS) {
  nodesTest(
    kind,
    "appearing offline hides the user from friends on every node while GET /presence tells the truth; last seen follows",
    { users: [1, 2, 3], friends: [[1, 2], [3, 1]], env: { NOTIFY_SECRET } },
    async ([a, b]) => {
      const bob = await b!.connectAs(2);
      const phone = await a!.connectAs(1);
      assert.equal((await bob.next("presence")).status, "online");

      // Switching on (node A): friends see offline, with that moment as last seen.
      phone.send({ type: "settings", appear_offline: true });
      assert.equal((await nextSettings(phone)).appear_offline, true);
      const hidden = await bob.next("presence");
      assert.deepEqual(withoutLastSeen(hidden), {
        type: "presence",
        user_id: 1,
        status: "offline",
      });
      const [row] = await a!.db.sql`select last_seen_at from chat_user_settings where user_id = 1`;
      assert.equal(row!.last_seen_at.toISOString(), hidden.last_seen_at);

      // Typing is not forwarded; the message sent after it arrives, with no typing before it.
      phone.send({ type: "typing", recipient_user_id: 2 });
      phone.send({ type: "chat_message", recipient_user_id: 2, message_text: "hi" });
      assert.equal((await nextOf(bob, "typing", "chat_message")).type, "chat_message");

      // A friend signing in on node B sees the user offline, last seen when they hid.
      const carol = await b!.connect();
      carol.send({ type: "authenticate", auth_token: await b!.token(3) });
      const carolAuth = await carol.next("authenticated");
      assert.deepEqual(carolAuth.online_friends, []);
      assert.deepEqual(carolAuth.last_seen, { "1": hidden.last_seen_at });

      // The backend's view is the truth.
      const res = await fetch(`${b!.internalUrl}/presence?user_ids=1,2,3`, {
        headers: { authorization: `Bearer ${NOTIFY_SECRET}` },
      });
      assert.deepEqual(await res.json(), { online: [1, 2, 3] });

      // A second device on node B learns it too: its typing is withheld.
      const laptop = await b!.connectAs(1);
      laptop.send({ type: "typing", recipient_user_id: 2 });
      laptop.send({ type: "chat_message", recipient_user_id: 2, message_text: "again" });
      assert.equal((await nextOf(bob, "typing", "chat_message")).type, "chat_message");

      // Switching off (node B): friends see online; node A forwards typing again.
      laptop.send({ type: "settings", appear_offline: false });
      for (const device of [phone, laptop]) {
        assert.equal((await nextSettings(device)).appear_offline, false);
      }
      assert.deepEqual(await bob.next("presence"), {
        type: "presence",
        user_id: 1,
        status: "online",
      });
      assert.equal((await carol.next("presence")).status, "online");
      phone.send({ type: "typing", recipient_user_id: 2 });
      assert.equal((await nextOf(bob, "typing", "chat_message")).type, "typing");

      // On again from node A: node B withholds typing at once.
      phone.send({ type: "settings", appear_offline: true });
      await laptop.next("settings_updated");
      assert.equal((await bob.next("presence")).status, "offline");
      laptop.send({ type: "typing", recipient_user_id: 2 });
      laptop.send({ type: "chat_message", recipient_user_id: 2, message_text: "still here" });
      assert.equal((await nextOf(bob, "typing", "chat_message")).type, "chat_message");

      // Hidden, leaving and coming back sends friends nothing.
      await phone.close();
      await laptop.close();
      await a!.server.hub.settled();
      await b!.server.hub.settled();
      const back = await a!.connectAs(1);
      back.send({ type: "chat_message", recipient_user_id: 2, message_text: "back" });
      assert.equal((await nextOf(bob, "presence", "chat_message")).type, "chat_message");

      // Visible again, a real disconnect is announced with when it happened, and recorded.
      back.send({ type: "settings", appear_offline: false });
      assert.equal((await bob.next("presence")).status, "online");
      const closedAt = Date.now();
      await back.close();
      const offline = await bob.next("presence");
      assert.deepEqual(withoutLastSeen(offline), {
        type: "presence",
        user_id: 1,
        status: "offline",
      });
      const seenAt = Date.parse(offline.last_seen_at as string);
      assert.ok(Math.abs(seenAt - closedAt) < 5000, "last seen is when the connection closed");
      await eventually("last_seen_at is recorded", async () => {
        const [r] = await a!.db.sql`select last_seen_at from chat_user_settings where user_id = 1`;
        return r!.last_seen_at.toISOString() === offline.last_seen_at;
      });
      const carolAgain = await a!.connect();
      carolAgain.send({ type: "authenticate", auth_token: await a!.token(3) });
      assert.deepEqual((await carolAgain.next("authenticated")).last_seen, {
        "1": offline.last_seen_at,
      });
    },
  );
}

/** An SDK client of `userId` on `t`. */
function sdkFor(t: TestServer, userId: number): ChatClient {
  return new ChatClient({ url: t.wsUrl, getToken: () => t.token(userId), pingIntervalMs: 0 });
}

Deno.test("the SDK changes settings, resolving with them, and keeps settings and last seen up to date", async () => {
  await withTestServer({ users: [1, 2, 4], friends: [[1, 2]] }, async (t) => {
    const bob = await t.connectAs(2);
    await bob.close();
    await t.server.hub.settled();
    await eventually(
      "bob's last seen is recorded",
      async () =>
        (await t.db
          .sql`select 1 from chat_user_settings where user_id = 2 and last_seen_at is not null`)
          .length === 1,
    );
    const alice = sdkFor(t, 1);
    const other = sdkFor(t, 1);
    try {
      const signedIn = alice.once("authenticated");
      alice.connect();
      const auth = await signedIn;
      assert.deepEqual(auth.settings, { muted: {}, dnd_until: null, appear_offline: false });
      assert.equal(typeof auth.last_seen?.["2"], "string");
      assert.equal(alice.lastSeen.get(2), auth.last_seen?.["2"]);
      other.connect();
      await other.once("authenticated");

      const until = new Date(Date.now() + 3_600_000);
      const fromOther = other.once("settings_updated");
      const muted = await alice.mute(2, until);
      assert.deepEqual(muted.muted, { "2": until.toISOString() });
      assert.deepEqual((await fromOther).settings, muted);
      assert.deepEqual(other.settings, muted);
      const dnd = await alice.setDoNotDisturb(until);
      assert.equal(dnd.dnd_until, until.toISOString());
      assert.equal((await alice.setAppearOffline(true)).appear_offline, true);
      assert.deepEqual((await alice.mute(2, null)).muted, {});
      await assert.rejects(
        alice.mute(4, until),
        (err: ChatSendError) => err.code === "not_friends",
      );

      // A friend coming and going: presence keeps last seen.
      const bobAgain = await t.connectAs(2);
      await eventually("bob online: no last seen", () => !alice.lastSeen.has(2));
      await bobAgain.close();
      await eventually("bob's new last seen", () => alice.lastSeen.has(2));
      assert.ok(Date.parse(alice.lastSeen.get(2)!) > Date.parse(auth.last_seen?.["2"] ?? ""));
    } finally {
      await alice.close();
      await other.close();
    }
  });
});
