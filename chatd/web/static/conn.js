// The WebSocket to /ws: one line-protocol command per text frame out, one JSON-mode
// object per text frame in. Replies come strictly in command order, so a FIFO of
// pending commands pairs each ok/error with its command; everything else (message,
// notice) is a push. When the socket drops it comes back by itself with backoff.

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const PING_EVERY_MS = 30000;
const PING_TIMEOUT_MS = 10000;
const HEALTHY_MS = 10000; // a socket that lived this long starts the backoff over
const REVOKED = 4401; // close code: the token was revoked (logged out elsewhere)

/** The server answered a command with {"type":"error"}. */
export class CommandError extends Error {
  constructor(reply) {
    super(String(reply.message || reply.code));
    this.code = String(reply.code);
    this.reply = reply;
  }
}

/** The connection closed before the command's reply arrived (or was not open). */
export class OfflineError extends Error {
  constructor() {
    super("not connected");
    this.code = "offline";
  }
}

function verbOf(line) {
  return line.trimStart().split(/\s+/, 1)[0].toLowerCase();
}

export class Connection {
  /**
   * url(): the WebSocket URL to open now (it carries the token).
   * onPush(obj): a message or notice, or a reply nobody waits for.
   * onState(state, detail): "connecting" | "online" | "offline" (detail: ms to retry) | "stopped".
   * onOpen(): called on every (re)connect; replies to commands it sends work already.
   * onRefused(): the socket closed without ever opening; returns true to keep retrying.
   */
  constructor({ url, onPush, onState, onOpen, onRefused }) {
    this.url = url;
    this.onPush = onPush;
    this.onState = onState;
    this.onOpen = onOpen;
    this.onRefused = onRefused;
    this.ws = null;
    this.pending = [];
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.pingSentAt = 0;
    this.lastHeard = 0;
  }

  get online() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.closeSocket();
    this.onState("stopped");
  }

  /** Sends one command line; resolves with its ok object, rejects with CommandError. */
  command(line) {
    const clean = line.replace(/[\r\n]+/g, " ");
    if (!this.online) return Promise.reject(new OfflineError());
    return new Promise((resolve, reject) => {
      this.pending.push({ verb: verbOf(clean), resolve, reject });
      this.ws.send(clean);
    });
  }

  open() {
    clearTimeout(this.retryTimer);
    this.onState("connecting");
    let opened = false;
    let openedAt = 0;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      opened = true;
      openedAt = Date.now();
      this.lastHeard = openedAt;
      this.onState("online");
      this.keepAlive();
      Promise.resolve(this.onOpen()).catch((err) => console.warn("catch-up failed", err));
    };
    ws.onmessage = (event) => {
      this.lastHeard = Date.now();
      if (typeof event.data !== "string") return;
      for (const line of event.data.split("\n")) {
        if (!line.trim()) continue;
        let obj;
        try {
          obj = JSON.parse(line);
        } catch {
          console.warn("not JSON from server", line);
          continue;
        }
        this.dispatch(obj);
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      this.failPending();
      if (this.stopped) return;
      // A server that accepts and at once drops the socket still gets the backoff.
      if (opened && Date.now() - openedAt >= HEALTHY_MS) this.attempt = 0;
      // Refused, or the token revoked (DELETE /session from another tab): ask why.
      if ((!opened || (event && event.code === REVOKED)) && this.onRefused) {
        Promise.resolve(this.onRefused()).then((retry) => {
          if (retry && !this.stopped) this.retryLater();
        });
      } else {
        this.retryLater();
      }
    };
  }

  dispatch(obj) {
    if (obj && (obj.type === "ok" || obj.type === "error")) {
      const head = this.pending[0];
      // cmd is null only for frame-level errors, which answer the oldest command.
      if (head && (obj.cmd === head.verb || obj.cmd === null || obj.cmd === undefined)) {
        this.pending.shift();
        if (obj.type === "ok") head.resolve(obj);
        else head.reject(new CommandError(obj));
        return;
      }
    }
    this.onPush(obj);
  }

  retryLater() {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.onState("offline", delay);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /** Reconnect now instead of waiting for the backoff (the browser came back online). */
  retryNow() {
    if (!this.stopped && this.ws === null) this.open();
  }

  /**
   * After PING_EVERY_MS of silence, send `ping`; a ping unanswered PING_TIMEOUT_MS
   * later means a dead connection. Judged from the ping's own send time, so a
   * background tab whose timers the browser slows to once a minute is not mistaken
   * for a dead one.
   */
  keepAlive() {
    clearInterval(this.pingTimer);
    this.pingSentAt = 0;
    this.pingTimer = setInterval(() => {
      if (!this.online) return;
      const now = Date.now();
      const waiting = this.pingSentAt > this.lastHeard;
      if (waiting && now - this.pingSentAt > PING_TIMEOUT_MS) {
        this.closeSocket(); // half-open: not even the ping's reply came back
      } else if (!waiting && now - this.lastHeard >= PING_EVERY_MS) {
        this.pingSentAt = now;
        this.command("ping").catch(() => {});
      }
    }, PING_TIMEOUT_MS / 2);
  }

  closeSocket() {
    const ws = this.ws;
    if (ws === null) return;
    try {
      ws.close();
    } catch {
      // already closing
    }
    // Do not wait for the close handshake of a dead peer: fail over now.
    ws.onclose && ws.onclose(new CloseEvent("close"));
  }

  failPending() {
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) p.reject(new OfflineError());
  }
}
