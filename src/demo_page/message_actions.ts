/**
 * @module demo_page/message_actions
 * The demo page's actions on a stored message (plain JavaScript, defined before the page script
 * that calls it), v1.2, behind a "⋯" button beside its time: "Edit" (inline, in place of the text)
 * and "Delete for everyone" on your own messages, "Delete for me" on every message; an edited message is marked "edited", a deleted
 * one (for everyone, or for you) shows "message deleted" in place of its text. A refusal (the edit
 * window has passed, say) is shown under the message with the server's reason. The SDK's
 * `message_updated` event (this device's action, another device's, or the friend's, live or
 * caught up) updates a message on screen; one not on screen is left to `history()`. Shown only
 * when the embedded SDK has `editMessage`. `page` is `{ client, entryOf(message) }`; it returns
 * `{ render(entry, message) }`, which `show()` calls for every stored message it shows.
 */

export const MESSAGE_ACTIONS_JS: string = String.raw`
function startMessageActions(page) {
  const { client } = page;
  const v12 = typeof client.editMessage === "function";

  const isDeleted = (m) => Boolean(m.deleted_at) || m.deleted_for_me === true;

  // What is known of the message, once it has an id: its text, edited or deleted; never undone.
  const render = (entry, m) => {
    if (entry.deleted) return;
    if (isDeleted(m)) {
      entry.deleted = true;
      entry.text = "";
      entry.textEl.textContent = "message deleted";
      entry.li.classList.add("deleted");
      entry.editedEl?.remove();
      entry.editForm?.remove();
      entry.tools?.remove();
      entry.tools = undefined;
      closeMenu(entry);
      return;
    }
    if (m.edited_at && (!entry.editedAt || m.edited_at >= entry.editedAt)) {
      entry.editedAt = m.edited_at;
      entry.text = m.message_text;
      if (!entry.editForm) entry.textEl.textContent = m.message_text;
      if (!entry.editedEl) {
        entry.editedEl = el("span", "edited", "edited");
        entry.editedEl.title = "Edited at " + clock(m.edited_at);
        entry.meta.prepend(entry.editedEl);
      }
    }
    if (v12 && !entry.tools && entry.id !== undefined) addTools(entry);
  };

  const problem = (entry, text) => {
    entry.problemEl?.remove();
    entry.problemEl = undefined;
    if (!text) return;
    entry.problemEl = el("span", "msg-problem", text);
    entry.li.append(entry.problemEl);
  };

  const button = (text, onClick) => {
    const b = el("button", "", text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  };

  const act = (entry, what, promise) => {
    problem(entry);
    promise.then((m) => render(entry, m), (err) => problem(entry, "Not " + what + ": " + err.message));
  };

  // One "⋯" button per message (keeps the bubbles quiet); it opens the actions that apply.
  const addTools = (entry) => {
    entry.tools = el("span", "msg-tools");
    const more = button("⋯", () => (entry.menu ? closeMenu(entry) : openMenu(entry)));
    more.className = "more";
    more.title = "Edit or delete";
    more.setAttribute("aria-label", "Edit or delete this message");
    entry.tools.append(more);
    entry.meta.append(entry.tools);
  };
  const openMenu = (entry) => {
    const choose = (run) => () => (closeMenu(entry), run());
    entry.menu = el("span", "msg-menu");
    if (entry.mine) entry.menu.append(button("Edit", choose(() => startEdit(entry))));
    entry.menu.append(button("Delete for me", choose(() =>
      act(entry, "deleted", client.deleteMessage(entry.id, "me")))));
    if (entry.mine) {
      entry.menu.append(button("Delete for everyone", choose(() =>
        act(entry, "deleted", client.deleteMessage(entry.id, "everyone")))));
    }
    entry.li.append(entry.menu);
  };
  const closeMenu = (entry) => {
    entry.menu?.remove();
    entry.menu = undefined;
  };

  // Inline: the text becomes an input; Enter or Save sends it, Escape or Cancel puts it back.
  const startEdit = (entry) => {
    if (entry.editForm || entry.deleted) return;
    const form = el("form", "edit-form");
    const input = el("input", "edit-text");
    input.value = entry.text;
    input.setAttribute("aria-label", "edit message");
    const save = el("button", "", "Save");
    form.append(input, save, button("Cancel", () => stopEdit(entry)));
    entry.editForm = form;
    entry.textEl.hidden = true;
    entry.textEl.after(form);
    input.focus();
    input.addEventListener("keydown", (event) => event.key === "Escape" && stopEdit(entry));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text || text === entry.text) return stopEdit(entry);
      save.disabled = true;
      problem(entry);
      client.editMessage(entry.id, text).then(
        (m) => (stopEdit(entry), render(entry, m)),
        (err) => (save.disabled = false, problem(entry, "Not edited: " + err.message)),
      );
    });
  };
  const stopEdit = (entry) => {
    entry.editForm?.remove();
    entry.editForm = undefined;
    entry.textEl.hidden = false;
    if (!entry.deleted) entry.textEl.textContent = entry.text;
  };

  if (v12) {
    client.on("message_updated", (u) => {
      const entry = page.entryOf(u.message);
      if (entry) render(entry, u.message);
    });
  }
  return { render };
}
`;
