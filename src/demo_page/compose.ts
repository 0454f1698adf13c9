/**
 * @module demo_page/compose
 * The demo page's composer (plain JavaScript, defined before the page script that calls it):
 * sending with the page's own `client_message_id`s, a refused or failed message kept on screen
 * with its reason and Retry (same id: stored once) and Edit (back into the input), a counter
 * near `MAX_MESSAGE_CHARS` code points, a notice instead of silence for a blank or too long text
 * (a long paste is kept whole, not cut), the draft remembered for a reload, and typing frames.
 * Messages are paced by the SDK (`authenticated.limits`): a quick burst waits, it is not refused.
 * `page` is what it needs of the page: `{ client, maxChars, selected(), select, friend, bubble,
 * place, setTick, show, byClientId, remember() }`; it returns `{ setDraft(text) }`.
 */

export const COMPOSE_JS: string = String.raw`
function startComposer(page) {
  const { client, maxChars, select, friend, bubble, place, setTick, show, byClientId } = page;
  let typingSentAt = 0;
  let typingStop;
  let noticeTimer;
  const count = (n) => n.toLocaleString("en-US");

  const notice = (text) => {
    clearTimeout(noticeTimer);
    $("notice").textContent = text;
    if (text) noticeTimer = setTimeout(() => ($("notice").textContent = ""), 8000);
  };

  // Our own ids, so that a message is known by its client_message_id before any answer: the
  // acknowledgement, a catch-up that returns it, and a retry (stored once) all find it.
  let sequence = 0;
  const newClientId = () => "page-" + Date.now().toString(36) + "-" + (++sequence) + "-" +
    Math.random().toString(36).slice(2, 10);

  const send = (peer, entry, id) => {
    entry.li.classList.remove("failed");
    entry.actions?.remove();
    entry.tickState = undefined;
    setTick(entry, "pending");
    byClientId.set(id, entry);
    client.send(peer, entry.text, { clientMessageId: id }).then(
      (m) => show(m),
      (err) => {
        entry.li.classList.add("failed");
        entry.tickState = "failed";
        entry.tick.textContent = " ✗ " + err.message;
        entry.tick.className = "tick failed";
        entry.tick.title = err.code ?? "failed";
        const retry = el("button", "retry", "Retry");
        const edit = el("button", "edit", "Edit");
        retry.type = edit.type = "button";
        retry.addEventListener("click", () => send(peer, entry, id));
        edit.addEventListener("click", () => {
          entry.li.remove();
          byClientId.delete(id);
          $("text").value = entry.text;
          select(peer);
          updateCounter();
          page.remember();
        });
        entry.actions = el("span", "actions");
        entry.actions.append(retry, edit);
        entry.li.append(entry.actions);
      },
    );
  };

  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    const selected = page.selected();
    if (!selected) return notice("Pick a friend first.");
    if (!text) return notice("Nothing to send: type a message first.");
    const length = [...text].length;
    if (length > maxChars) {
      return notice("Too long to send: " + count(length) + " characters, the limit is " +
        count(maxChars) + ". Shorten it by " + count(length - maxChars) + ".");
    }
    $("text").value = "";
    notice("");
    updateCounter();
    page.remember();
    stopTyping();
    const f = friend(selected);
    const entry = bubble(true, text, selected);
    place(f, entry.li, undefined);
    toEnd(f.log);
    send(selected, entry, newClientId());
  });

  const stopTyping = () => {
    clearTimeout(typingStop);
    const selected = page.selected();
    if (typingSentAt && selected) client.typing(selected, false);
    typingSentAt = 0;
  };
  // Code points as the server counts them (trimmed), with a counter from 90 % of the limit. A text
  // over it is kept whole (a paste is not cut) and marked; sending it says by how much to shorten.
  const updateCounter = () => {
    const n = [...$("text").value.trim()].length;
    const over = n > maxChars;
    $("count").textContent = n >= maxChars * 0.9 ? n + " / " + maxChars : "";
    $("count").classList.toggle("full", n >= maxChars);
    $("count").classList.toggle("over", over);
    $("count").title = over ? count(n - maxChars) + " characters over the limit" : "";
    return { n, over };
  };
  $("text").addEventListener("input", () => {
    const { n, over } = updateCounter();
    if (over) {
      notice(count(n) + " characters: " + count(n - maxChars) + " over the limit of " +
        count(maxChars) + ". Shorten it before sending.");
    } else if ($("notice").textContent.includes("over the limit")) notice("");
    page.remember();
    const selected = page.selected();
    if (!selected) return;
    if (Date.now() - typingSentAt > 2000 && client.typing(selected, true)) typingSentAt = Date.now();
    clearTimeout(typingStop);
    typingStop = setTimeout(stopTyping, 3000);
  });

  return {
    setDraft(text) {
      $("text").value = text;
      updateCounter();
    },
  };
}
`;
