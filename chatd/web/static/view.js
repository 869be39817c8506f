// Building the DOM. Every piece of text from the server goes in as a text node
// (h() turns strings into Text nodes; no HTML string is ever parsed), so a
// message saying <img src=x onerror=...> is shown as those characters, never parsed.

/**
 * h("li", {className: "msg", dataset: {id: 3}}, "text", child): an element with
 * properties set as DOM properties and string children added as text nodes.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
}

const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

/** Message text with http(s) links made clickable; the rest stays plain text. */
export function richText(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    let url;
    try {
      url = new URL(match[0]);
    } catch {
      continue;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") continue;
    parts.push(text.slice(last, match.index));
    parts.push(h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer" }, match[0]));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The side list: one button per chat with its unread badge. */
export function renderList(listRooms, listPeople, chats, activeKey, onOpen) {
  const rooms = [];
  const people = [];
  for (const chat of chats) {
    const active = chat.name.toLowerCase() === activeKey;
    const badge = chat.unread > 0
      ? h("span", { className: "badge", title: plural(chat.unread, "unread message") }, String(chat.unread))
      : null;
    const item = h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          className: `chat-item${active ? " active" : ""}${chat.unread ? " has-unread" : ""}`,
          dataset: { chat: chat.name },
          onclick: () => onOpen(chat.name),
        },
        h("span", { className: "chat-name" }, chat.name),
        badge,
      ),
    );
    if (active) item.firstChild.setAttribute("aria-current", "true");
    (chat.kind === "private" ? people : rooms).push(item);
  }
  listRooms.replaceChildren(...rooms);
  listPeople.replaceChildren(
    ...(people.length ? people : [h("li", { className: "empty" }, "No private chats yet")]),
  );
}

/**
 * One message as a list item. `actions`: {onComment(msg), onDownload(file)}.
 * `missed`: the set of ids that arrived while the page was away.
 */
function messageItem(msg, me, actions, missed, isComment) {
  const mine = msg.from === me;
  const classes = ["msg"];
  if (isComment) classes.push("comment");
  if (mine) classes.push("mine");
  if (missed && missed.has(msg.id)) classes.push("missed");
  const body = [];
  const text = typeof msg.text === "string" ? msg.text : "";
  if (text && !(msg.file && text === msg.file.name)) body.push(...richText(text));
  const file = msg.file
    ? h(
        "button",
        {
          type: "button",
          className: "file",
          dataset: { file: msg.file.id },
          title: `sha256 ${msg.file.sha256 || ""}`,
          onclick: () => actions.onDownload(msg.file),
        },
        h("span", { className: "file-icon", ariaHidden: "true" }, "↓"),
        h("span", { className: "file-name" }, String(msg.file.name)),
        h("span", { className: "file-size" }, formatSize(Number(msg.file.size) || 0)),
      )
    : null;
  return h(
    "li",
    { className: classes.join(" "), dataset: { id: msg.id } },
    h(
      "div",
      { className: "meta" },
      h("span", { className: "from" }, String(msg.from)),
      h("time", { dateTime: String(msg.ts || ""), title: `[${msg.id}] ${msg.ts || ""}` }, formatTime(msg.ts)),
      // A comment whose message is not loaded (yet) says what it answers.
      msg.reply_to != null && !isComment
        ? h("span", { className: "re", title: "a comment on an earlier message" }, `re [${msg.reply_to}]`)
        : null,
      isComment
        ? null
        : h(
            "button",
            {
              type: "button",
              className: "link comment-btn",
              title: "Comment on this message",
              onclick: () => actions.onComment(msg),
            },
            "comment",
          ),
    ),
    body.length ? h("div", { className: "text" }, ...body) : null,
    file,
  );
}

/** The active chat's messages: threads in order, comments under their message. */
export function renderMessages(list, chat, me, actions) {
  const missed = chat.missed ? chat.missed.ids : null;
  const items = [];
  if (chat.exhausted) {
    items.push(h("li", { className: "note start" }, `This is the beginning of ${chat.name}.`));
  } else if (chat.loading) {
    items.push(h("li", { className: "note loading" }, "Loading earlier messages…"));
  }
  const threads = chat.threads();
  const notes = [...chat.notes];
  let markerPlaced = false;
  const placeNotes = (uptoId) => {
    while (notes.length && notes[0].after < uptoId) {
      const note = notes.shift();
      const buttons = (note.actions || []).map((a) =>
        h("button", { type: "button", className: "link", onclick: a.run }, a.label),
      );
      items.push(h("li", { className: "note" }, note.text, ...buttons));
    }
  };
  for (const { message, comments } of threads) {
    placeNotes(message.id);
    if (!markerPlaced && missed && missed.size && message.id >= chat.missed.first) {
      items.push(missedMarker(chat.missed.count));
      markerPlaced = true;
    }
    const li = messageItem(message, me, actions, missed, false);
    if (comments.length) {
      li.append(
        h(
          "ol",
          { className: "comments", ariaLabel: `Comments on message ${message.id}` },
          comments.map((c) => messageItem(c, me, actions, missed, true)),
        ),
      );
    }
    items.push(li);
  }
  placeNotes(Infinity);
  if (!markerPlaced && missed && missed.size) items.push(missedMarker(chat.missed.count));
  list.replaceChildren(...items);
}

function missedMarker(count) {
  return h("li", { className: "missed-marker", role: "separator" }, plural(count, "missed message"));
}
