// What the page knows: the chats, their messages by id, unread counts, paging state and
// the "missed" marker. Plain data with no DOM, so the view can be rebuilt from it at any
// time. Messages are keyed by id, so the same message arriving twice (a replay, a
// history page and a push after a reconnect) is kept once.

export function kindOf(name) {
  if (name.toLowerCase() === "#general") return "general";
  return name.startsWith("#") ? "room" : "private";
}

/** Chat names are case-insensitive (users and rooms alike); this is the map key. */
export function keyOf(name) {
  return name.toLowerCase();
}

export class Chat {
  constructor(name) {
    this.name = name;
    this.kind = kindOf(name);
    this.messages = new Map();
    this.notes = []; // local notices shown in this chat: {after: id, text}
    this.unread = 0;
    this.seen = 0; // the highest id the server said this chat has (status last_id)
    this.loadedOnce = false; // the newest page of history was fetched
    this.exhausted = false; // paging reached the first message
    this.loading = false;
    this.missed = null; // {first: id, count} of the last catch-up
  }

  get newest() {
    let max = 0;
    for (const id of this.messages.keys()) if (id > max) max = id;
    return max;
  }

  get oldest() {
    let min = Infinity;
    for (const id of this.messages.keys()) if (id < min) min = id;
    return min === Infinity ? 0 : min;
  }

  /** Top-level messages in order, each with its comments (reply_to) in order. */
  threads() {
    const sorted = [...this.messages.values()].sort((a, b) => a.id - b.id);
    const comments = new Map();
    const top = [];
    for (const m of sorted) {
      if (m.reply_to != null && this.messages.has(m.reply_to)) {
        if (!comments.has(m.reply_to)) comments.set(m.reply_to, []);
        comments.get(m.reply_to).push(m);
      } else {
        top.push(m);
      }
    }
    return top.map((m) => ({ message: m, comments: comments.get(m.id) || [] }));
  }
}

export class ChatStore {
  constructor(me) {
    this.me = me;
    this.chats = new Map();
    this.active = "#general";
  }

  chat(name) {
    const key = keyOf(name);
    let chat = this.chats.get(key);
    if (!chat) {
      chat = new Chat(name);
      this.chats.set(key, chat);
    }
    return chat;
  }

  /** Drops a chat from the list (a user that does not exist, a room one was removed from). */
  remove(name) {
    this.chats.delete(keyOf(name));
    if (keyOf(this.active) === keyOf(name)) this.active = "#general";
  }

  has(name) {
    return this.chats.has(keyOf(name));
  }

  isActive(chat) {
    return keyOf(chat.name) === keyOf(this.active);
  }

  /**
   * Stores a message object as the server sends it; true if it was not known.
   * `counts`: whether it may raise the chat's unread count (live pushes and replays
   * do, history pages do not).
   */
  add(msg, { counts }) {
    if (typeof msg.id !== "number" || typeof msg.chat !== "string") return false;
    const chat = this.chat(msg.chat);
    const known = chat.messages.get(msg.id);
    if (known && !known.local) return false;
    chat.messages.set(msg.id, msg); // the server's copy replaces a local placeholder
    if (known) return false;
    if (counts && msg.from !== this.me && !this.isActive(chat)) chat.unread += 1;
    return true;
  }

  /** Sorted for the side list: #general, then rooms, then people, by name. */
  list() {
    const rank = { general: 0, room: 1, private: 2 };
    return [...this.chats.values()].sort(
      (a, b) => rank[a.kind] - rank[b.kind] || a.name.localeCompare(b.name),
    );
  }
}
