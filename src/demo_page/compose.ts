/**
 * @module demo_page/compose
 * The demo page's composer (plain JavaScript, defined before the page script that calls it):
 * sending with the page's own `client_message_id`s, a refused or failed message kept on screen
 * with its reason and Retry (same id: stored once) and Edit (back into the input), the input
 * capped at `MAX_MESSAGE_CHARS` code points with a counter near the limit, and typing frames.
 * `page` is what it needs of the page: `{ client, maxChars, selected(), select, friend, bubble,
 * place, setTick, show, byClientId }`.
 */

export const COMPOSE_JS: string = String.raw`
function startComposer(page) {
  const { client, maxChars, select, friend, bubble, place, setTick, show, byClientId } = page;
  let typingSentAt = 0;
  let typingStop;

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
    if (!text || !selected) return;
    $("text").value = "";
    updateCounter();
    stopTyping();
    const f = friend(selected);
    const entry = bubble(true, text);
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
  // At most MAX_MESSAGE_CHARS code points (what the server counts), with a counter near it.
  const updateCounter = () => {
    const input = $("text");
    const chars = [...input.value];
    if (chars.length > maxChars) input.value = chars.slice(0, maxChars).join("");
    const n = Math.min(chars.length, maxChars);
    $("count").textContent = n >= maxChars * 0.9 ? n + " / " + maxChars : "";
    $("count").classList.toggle("full", n >= maxChars);
  };
  $("text").addEventListener("input", () => {
    updateCounter();
    const selected = page.selected();
    if (!selected) return;
    if (Date.now() - typingSentAt > 2000 && client.typing(selected, true)) typingSentAt = Date.now();
    clearTimeout(typingStop);
    typingStop = setTimeout(stopTyping, 3000);
  });

}
`;
