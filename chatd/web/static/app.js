// The web client: logs in over POST /connect, then lives on the WebSocket at
// /ws?token=… (conn.js), keeps the chats in a ChatStore (state.js) and draws them with
// view.js. After every (re)connect it catches up: the server replays what this user
// has not received, and history fills any gap another session of the user received
// meanwhile; what came in that way is marked as missed.

import * as api from "./api.js";
import { CommandError, Connection } from "./conn.js";
import { ChatStore, keyOf } from "./state.js";
import { h, renderList, renderMessages } from "./view.js";

const PAGE = 30; // messages per history page
const CATCH_UP = 200; // at most this many per chat when filling a gap (chat.history_max)
const TOKEN_KEY = "chatd.token";
const USER_KEY = "chatd.user";
const ENDED_KEY = "chatd.ended"; // why the last session ended: shown again after a reload
const REFUSED = "The server refused the live connection; retrying.";

const $ = (id) => document.getElementById(id);

const ui = {
  login: $("login"),
  loginForm: $("login-form"),
  loginName: $("login-name"),
  loginPassword: $("login-password"),
  loginError: $("login-error"),
  app: $("app"),
  me: $("me"),
  conn: $("conn"),
  logout: $("logout"),
  rooms: $("rooms"),
  people: $("people"),
  openForm: $("open-form"),
  openName: $("open-name"),
  back: $("back"),
  title: $("chat-title"),
  inviteForm: $("invite-form"),
  inviteName: $("invite-name"),
  leave: $("leave"),
  banner: $("banner"),
  scroller: $("scroller"),
  messages: $("messages"),
  composer: $("composer"),
  replying: $("replying"),
  replyingText: $("replying-text"),
  replyCancel: $("reply-cancel"),
  file: $("file"),
  text: $("text"),
};

/** One logged-in session of the page: token, store, socket. */
class Session {
  constructor(token, me, isNew) {
    this.token = token;
    this.me = me;
    this.isNew = isNew; // a new account's first replay is recent history, not missed
    this.store = new ChatStore(me);
    this.store.chat("#general");
    this.generation = 0; // counts (re)connects; missed markers belong to one
    this.replyTo = null;
    this.bannerTimer = 0;
    this.conn = new Connection({
      url: () => {
        const scheme = location.protocol === "https:" ? "wss" : "ws";
        return `${scheme}://${location.host}/ws?token=${encodeURIComponent(this.token)}`;
      },
      onPush: (obj) => this.onPush(obj),
      onState: (state, delay) => this.onConnState(state, delay),
      onOpen: () => this.catchUp(),
      onRefused: async () => {
        const why = await api.probe(this.token);
        if (why === "revoked") {
          endSession("Your session has ended; please log in again.");
          return false;
        }
        // The token is good and the server answers, yet it refused the socket (a
        // limit such as sessions per user); say so instead of only "offline".
        if (why === "ok") this.flash(REFUSED, 0);
        return true;
      },
    });
  }

  start() {
    ui.me.textContent = this.me;
    ui.banner.hidden = true;
    this.setReplyTo(null);
    this.renderList();
    this.renderChat({ bottom: true });
    this.conn.start();
  }

  stop() {
    this.conn.stop();
  }

  get active() {
    return this.store.chat(this.store.active);
  }

  // ---- the socket ---------------------------------------------------------------

  onConnState(state, delay) {
    ui.app.dataset.conn = state;
    if (state === "online" && ui.banner.textContent === REFUSED) ui.banner.hidden = true;
    if (state === "online") ui.conn.textContent = "online";
    else if (state === "connecting") ui.conn.textContent = "connecting…";
    else if (state === "offline") ui.conn.textContent = `offline, retrying in ${Math.ceil(delay / 1000)} s`;
    else ui.conn.textContent = "";
  }

  /**
   * Runs after every (re)connect: the chat list, the active chat's page, and any gap.
   * The server replays what no session of this user received; history fills in what
   * another session (nc, another tab) received while this page was away.
   */
  async catchUp() {
    this.generation += 1;
    const reconnect = this.generation > 1;
    const baseline = new Map(); // chat key -> the newest id this page knew of
    for (const [key, chat] of this.store.chats) baseline.set(key, Math.max(chat.seen, chat.newest));
    try {
      const status = await this.conn.command("status");
      const gaps = [];
      for (const c of status.chats || []) {
        const chat = this.store.chat(c.chat);
        const last = Number(c.last_id) || 0;
        const known = baseline.get(keyOf(chat.name));
        // A chat this page never heard of appeared while it was away: all of it is new.
        if (reconnect && last > (known ?? 0) && last > chat.newest) gaps.push([chat, known ?? 0]);
        chat.seen = Math.max(chat.seen, last);
      }
      const rooms = await this.conn.command("rooms");
      for (const r of rooms.rooms || []) this.store.chat(r.room);
      this.renderList();
      for (const [chat, since] of gaps) await this.fillGap(chat, since);
      if (!this.active.loadedOnce) await this.loadLatest(this.active);
    } catch (err) {
      if (err instanceof CommandError) this.flash(`catch-up failed: ${err.message}`);
      return; // offline again: the next connect catches up
    }
    const missed = this.missedCount();
    if (missed > 0) this.flash(`${reconnect ? "Reconnected: " : ""}${plural(missed, "missed message")}`);
  }

  /** The messages of a chat after id `since`, which this page has not seen. */
  async fillGap(chat, since) {
    const reply = await this.conn.command(`history ${chat.name} ${CATCH_UP}`);
    for (const m of reply.messages || []) {
      const fresh = m.id > since;
      if (this.store.add(m, { counts: fresh }) && fresh) this.markMissed(chat, m.id);
    }
    this.renderList();
    if (this.store.isActive(chat)) this.renderChat({});
  }

  markMissed(chat, id) {
    if (!chat.missed || chat.missed.generation !== this.generation) {
      chat.missed = { generation: this.generation, ids: new Set(), first: id, count: 0 };
    }
    if (chat.missed.ids.has(id)) return;
    chat.missed.ids.add(id);
    chat.missed.first = Math.min(chat.missed.first, id);
    chat.missed.count = chat.missed.ids.size;
  }

  missedCount() {
    let n = 0;
    for (const chat of this.store.chats.values()) {
      if (chat.missed && chat.missed.generation === this.generation) n += chat.missed.count;
    }
    return n;
  }

  onPush(obj) {
    if (obj.type === "message") {
      const chat = this.store.chat(obj.chat);
      if (!this.store.add(obj, { counts: true })) return;
      if (obj.replay && !(this.isNew && this.generation === 1)) this.markMissed(chat, obj.id);
      this.renderList();
      if (this.store.isActive(chat)) this.renderChat({});
    } else if (obj.type === "notice") {
      this.onNotice(obj);
    } else if (obj.type === "error") {
      this.flash(`${obj.code}: ${obj.message}`);
    }
  }

  onNotice(n) {
    const note = (text, actions) => {
      if (typeof n.room !== "string") return this.flash(text);
      const room = this.store.chat(n.room);
      room.notes.push({ after: room.newest, text, actions });
      this.renderList();
      if (this.store.isActive(room)) this.renderChat({});
    };
    switch (n.event) {
      case "invited":
        return note(`${n.by} added you to ${n.room}`);
      case "joined":
        return note(`${n.user} joined`);
      case "left":
        if (n.user === this.me) return this.leaveRoom(n.room, `You left ${n.room}`);
        return note(`${n.user} left`);
      case "removed":
        if (n.user === this.me) return this.leaveRoom(n.room, `You were removed from ${n.room}`);
        return note(`${n.user} was removed`);
      case "denied":
        if (n.user === this.me) return this.flash(`Your request to join ${n.room} was declined`);
        return note(`${n.user} was not let in`);
      case "owner":
        return note(`${n.user} owns the room now`);
      case "join-request":
        return note(`${n.user} asks to join`, [
          { label: "approve", run: () => this.run(`room approve ${n.room} ${n.user}`) },
          { label: "deny", run: () => this.run(`room deny ${n.room} ${n.user}`) },
        ]);
      case "warned":
        return this.flash(`${n.by} reported you: ${n.strikes} of ${n.limit} strikes`);
      case "banned":
        return this.flash(`You are banned from sending until ${n.until}`);
      case "unbanned":
        return this.flash("Your ban was lifted");
      case "kicked":
        return this.flash(`${n.by} closed your sessions`);
      case "announce":
        return this.flash(`${n.from}: ${n.text}`, 15000);
      case "shutdown":
        return this.flash("The server is restarting…");
      default: {
        const fields = Object.entries(n)
          .filter(([k]) => k !== "type" && k !== "event")
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
        return this.flash(`${n.event} ${fields.join(" ")}`.trim());
      }
    }
  }

  leaveRoom(name, why) {
    this.store.remove(name);
    this.flash(why);
    this.renderList();
    this.renderChat({ bottom: true });
  }

  /** A command whose reply only matters if it fails. */
  async run(line) {
    try {
      return await this.conn.command(line);
    } catch (err) {
      this.flash(err.message);
      return null;
    }
  }

  // ---- chats and history --------------------------------------------------------

  open(name) {
    const chat = this.store.chat(name);
    this.store.active = chat.name;
    chat.unread = 0;
    this.setReplyTo(null);
    ui.app.classList.add("show-chat");
    this.renderList();
    this.renderChat({ bottom: true });
    if (!chat.loadedOnce && this.conn.online) this.loadLatest(chat).catch(() => {});
    if (window.matchMedia("(min-width: 700px)").matches) ui.text.focus();
  }

  async loadLatest(chat) {
    if (chat.loading) return;
    chat.loading = true;
    try {
      const reply = await this.conn.command(`history ${chat.name} ${PAGE}`);
      const messages = reply.messages || [];
      for (const m of messages) this.store.add(m, { counts: false });
      chat.loadedOnce = true;
      if (messages.length < PAGE) chat.exhausted = true;
    } catch (err) {
      if (err instanceof CommandError) {
        chat.loadedOnce = true;
        chat.exhausted = true;
        this.flash(err.message);
        if (err.code === "no-such-user" || err.code === "no-such-chat" || err.code === "not-a-member") {
          chat.loading = false;
          this.store.remove(chat.name);
          this.renderList();
          this.renderChat({ bottom: true });
          return;
        }
      }
    } finally {
      chat.loading = false;
    }
    if (this.store.isActive(chat)) this.renderChat({ bottom: true });
  }

  async loadOlder(chat) {
    if (chat.loading || chat.exhausted || !chat.loadedOnce || !this.conn.online) return;
    chat.loading = true;
    let messages = [];
    try {
      const oldest = chat.oldest;
      const reply = await this.conn.command(
        oldest ? `history ${chat.name} ${PAGE} before ${oldest}` : `history ${chat.name} ${PAGE}`,
      );
      messages = reply.messages || [];
      for (const m of messages) this.store.add(m, { counts: false });
      if (messages.length < PAGE) chat.exhausted = true;
    } catch (err) {
      if (err instanceof CommandError) chat.exhausted = true;
    } finally {
      chat.loading = false;
    }
    if (this.store.isActive(chat)) this.renderChat({ keepBottomDistance: true });
  }

  // ---- sending ------------------------------------------------------------------

  async send(text) {
    const chat = this.active;
    const replyTo = this.replyTo;
    let line;
    if (replyTo) line = `comment ${replyTo.id} ${text}`;
    else if (chat.kind === "general") line = `send_all ${text}`;
    else line = `send ${chat.name} ${text}`;
    const ok = await this.conn.command(line);
    const msg = {
      type: "message",
      id: ok.id,
      chat: chat.name,
      from: this.me,
      text,
      ts: ok.ts,
      reply_to: replyTo ? (ok.reply_to ?? replyTo.id) : null,
      replay: false,
    };
    if (chat.kind === "private") msg.to = chat.name.slice(1);
    this.store.add(msg, { counts: false });
    this.setReplyTo(null);
    this.renderChat({ bottom: true });
  }

  async sendFile(file) {
    const chat = this.active;
    this.flash(`Sending ${file.name}…`, 0);
    try {
      const reply = await api.upload(this.token, chat.name, file);
      this.store.add(
        {
          type: "message",
          id: reply.id,
          chat: chat.name,
          from: this.me,
          text: "",
          ts: new Date().toISOString(),
          reply_to: null,
          replay: false,
          file: reply.file,
          local: true, // until the push to this user's sessions brings the real one
        },
        { counts: false },
      );
      this.flash(`Sent ${file.name}`);
      if (this.store.isActive(chat)) this.renderChat({ bottom: true });
    } catch (err) {
      this.flash(`${file.name} not sent: ${err.message}`);
    }
  }

  async download(file) {
    try {
      const blob = await api.download(this.token, file.id);
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: String(file.name), hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      this.flash(`download failed: ${err.message}`);
    }
  }

  setReplyTo(msg) {
    this.replyTo = msg;
    ui.replying.hidden = !msg;
    ui.replyingText.textContent = msg
      ? `Comment on [${msg.id}] ${msg.from}: ${(msg.text || (msg.file && msg.file.name) || "").slice(0, 60)}`
      : "";
    if (msg) ui.text.focus();
  }

  // ---- drawing ------------------------------------------------------------------

  renderList() {
    if (session !== this) return; // a logged-out session's late replies draw nothing
    renderList(ui.rooms, ui.people, this.store.list(), keyOf(this.store.active), (name) =>
      this.open(name),
    );
    const unread = this.store.list().reduce((n, c) => n + c.unread, 0);
    document.title = unread ? `(${unread}) chatd` : "chatd";
  }

  /** bottom: scroll to the end; keepBottomDistance: older messages were put above. */
  renderChat({ bottom = false, keepBottomDistance = false }) {
    if (session !== this) return;
    const chat = this.active;
    const el = ui.scroller;
    const fromBottom = el.scrollHeight - el.scrollTop;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    ui.title.textContent = chat.name;
    ui.inviteForm.hidden = chat.kind !== "room";
    ui.leave.hidden = chat.kind !== "room";
    renderMessages(ui.messages, chat, this.me, {
      onComment: (msg) => this.setReplyTo(msg),
      onDownload: (file) => this.download(file),
    });
    if (keepBottomDistance) el.scrollTop = el.scrollHeight - fromBottom;
    else if (bottom || atBottom) el.scrollTop = el.scrollHeight;
    // A first page shorter than the screen cannot be scrolled: page on by itself.
    if (chat.loadedOnce && !chat.exhausted && el.scrollHeight <= el.clientHeight) {
      this.loadOlder(chat);
    }
  }

  flash(text, ms = 6000) {
    if (session !== this) return;
    clearTimeout(this.bannerTimer);
    ui.banner.textContent = text;
    ui.banner.hidden = false;
    if (ms) this.bannerTimer = setTimeout(() => (ui.banner.hidden = true), ms);
  }
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// ---- page wiring ------------------------------------------------------------------

let session = null;

function beginSession(token, me, isNew = false) {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(USER_KEY, me);
  sessionStorage.removeItem(ENDED_KEY);
  ui.login.hidden = true;
  ui.app.hidden = false;
  session = new Session(token, me, isNew);
  session.start();
}

function endSession(reason) {
  if (session) session.stop();
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  // The server may end a session at any time (its token revoked in another tab closes
  // this page's socket at once): a reload must still say why.
  if (reason) sessionStorage.setItem(ENDED_KEY, reason);
  else sessionStorage.removeItem(ENDED_KEY);
  ui.app.hidden = true;
  ui.login.hidden = false;
  ui.loginError.textContent = reason || "";
  ui.loginPassword.value = "";
  ui.loginName.focus();
}

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.loginError.textContent = "";
  const submit = ui.loginForm.querySelector("button");
  submit.disabled = true;
  try {
    const reply = await api.connect(ui.loginName.value.trim(), ui.loginPassword.value);
    beginSession(reply.token, reply.user, reply.new === true);
  } catch (err) {
    ui.loginError.textContent =
      err instanceof api.ApiError ? err.message : "The server cannot be reached.";
  } finally {
    submit.disabled = false;
  }
});

ui.logout.addEventListener("click", async () => {
  const token = session && session.token;
  endSession("");
  if (token) await api.logout(token);
});

ui.composer.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!session) return;
  const text = ui.text.value.replace(/\s+/g, " ").trim();
  if (!text) return;
  ui.text.disabled = true;
  try {
    await session.send(text);
    ui.text.value = "";
  } catch (err) {
    session.flash(err.code === "offline" ? "Not connected: your message was not sent." : err.message);
  } finally {
    ui.text.disabled = false;
    ui.text.focus();
  }
});

ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  } else if (event.key === "Escape" && session) {
    session.setReplyTo(null);
  }
});

ui.replyCancel.addEventListener("click", () => session && session.setReplyTo(null));

ui.file.addEventListener("change", async () => {
  const file = ui.file.files && ui.file.files[0];
  ui.file.value = "";
  if (file && session) await session.sendFile(file);
});

ui.openForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!session) return;
  let name = ui.openName.value.trim();
  if (!name) return;
  if (!name.startsWith("#") && !name.startsWith("@")) name = `@${name}`;
  if (name.startsWith("#") && name.toLowerCase() !== "#general" && !session.store.has(name)) {
    const ok = await session.run(`room create ${name.slice(1)}`);
    if (!ok) return;
    name = ok.room || name;
  }
  ui.openName.value = "";
  session.open(name);
});

ui.inviteForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!session) return;
  const user = ui.inviteName.value.trim();
  if (!user) return;
  const ok = await session.run(`room invite ${session.active.name} ${user}`);
  if (ok) {
    ui.inviteName.value = "";
    session.flash(`${user} is now in ${session.active.name}`);
  }
});

ui.leave.addEventListener("click", async () => {
  if (!session || session.active.kind !== "room") return;
  const name = session.active.name;
  if (await session.run(`room leave ${name}`)) session.leaveRoom(name, `You left ${name}`);
});

ui.back.addEventListener("click", () => ui.app.classList.remove("show-chat"));

ui.scroller.addEventListener("scroll", () => {
  if (session && ui.scroller.scrollTop < 80) session.loadOlder(session.active);
});

window.addEventListener("online", () => session && session.conn.retryNow());

const savedToken = sessionStorage.getItem(TOKEN_KEY);
const savedUser = sessionStorage.getItem(USER_KEY);
if (savedToken && savedUser) beginSession(savedToken, savedUser);
else endSession(sessionStorage.getItem(ENDED_KEY) || "");
