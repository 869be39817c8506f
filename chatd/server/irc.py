"""The IRC door: irssi, WeeChat and IRC bots on the same chat as nc and HTTP.

One asyncio Protocol per connection. Registration (CAP, PASS, NICK, USER, SASL PLAIN)
is handled here; the login itself is the core's `login` command, so the nick is the
chatd account with chatd's password rules. After registration every IRC command that
does something in the chat becomes a chatd Command fed to the session's Pipeline as a
`Submit` whose `reply` turns the core's Ok/Error into IRC lines (numerics, echo,
labels). Questions IRC asks that need no command (NAMES, WHO, MODE, LIST,
CHATHISTORY, MARKREAD) are answered from read-only views (chatd.core.irc_queries) in a
pipeline `Query`, so that every answer leaves in command order, after what earlier
commands wrote.

Pushed messages and notices reach IRC sessions through the hub's fan-out like any
other session's: `peer.mode` is one of the IRC modes and chatd.protocol.irc renders each
event once per mode. The session's transport is wrapped (`_IrcTransport`) for three
things the shared bytes cannot carry: the recipient's nick (a NUL in a rendered notice),
holding output until the welcome burst is out (a SASL login happens before CAP END),
and, for a client with `account-tag` but not `message-tags`, keeping only the tags it
negotiated.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import functools
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from chatd import __version__, logs
from chatd.core import irc_queries as q
from chatd.core.names import key, valid_name
from chatd.core.outcome import Outcome
from chatd.core.state import Refused
from chatd.protocol import commands as c
from chatd.protocol import irc
from chatd.protocol.events import (
    GENERAL,
    NOTICE_KIND,
    Code,
    Error,
    Event,
    Message,
    Mode,
    Notice,
    Ok,
    Push,
)
from chatd.protocol.irc import IrcFrameError, IrcMessage, IrcParseError
from chatd.protocol.render import Rendered, Renderer
from chatd.protocol.timefmt import rfc3339
from chatd.server.connection import Doorman
from chatd.server.context import Context
from chatd.server.peer import Peer
from chatd.server.pipeline import Pipeline, Query, Submit

if TYPE_CHECKING:
    from chatd.server.listeners import Operations

log = logs.get_logger("chatd.irc")

# Capabilities offered (CAP LS 302 values where a cap has one).
CAPS: Mapping[str, str] = {
    "account-tag": "",
    "batch": "",
    "draft/chathistory": "",
    "draft/read-marker": "",
    "echo-message": "",
    "labeled-response": "",
    "message-tags": "",
    "multi-prefix": "",  # one prefix (@) only: nothing changes, but clients ask
    "sasl": "PLAIN",
    "server-time": "",
    "userhost-in-names": "",
}

# Line-protocol commands the service nick will not run: they change how this
# connection speaks (mode, quit) or stream data IRC cannot carry (upload, download).
_SERVICE_REFUSED = frozenset({"mode", "quit", "upload", "download", "login"})

_WHOWAS_NICKS = 4096  # nicks WHOWAS remembers, with up to _WHOWAS_PER_NICK connections each
_WHOWAS_PER_NICK = 8
_SASL_MAX = 2048  # base64 of a PLAIN blob: two names and a password, with room to spare

_C0 = {ch: None for ch in range(0x20) if ch != 0x09}

# Error code -> numeric, for commands about a channel or nick; codes without a
# fitting numeric become a standard reply `FAIL <command> <CODE> :text`.
_NUMERIC: Mapping[Code, str] = {
    Code.NOT_LOGGED_IN: irc.ERR_NOTREGISTERED,
    Code.UNKNOWN_COMMAND: irc.ERR_UNKNOWNCOMMAND,
    Code.BAD_ARGS: irc.ERR_NEEDMOREPARAMS,
    Code.NO_SUCH_USER: irc.ERR_NOSUCHNICK,
    Code.NO_SUCH_CHAT: irc.ERR_NOSUCHCHANNEL,
    Code.NOT_A_MEMBER: irc.ERR_NOTONCHANNEL,
    Code.FORBIDDEN: irc.ERR_CHANOPRIVSNEEDED,
    Code.BANNED: irc.ERR_CANNOTSENDTOCHAN,
    Code.RATE_LIMITED: irc.ERR_CANNOTSENDTOCHAN,
    Code.BAD_PASSWORD: irc.ERR_PASSWDMISMATCH,
}

Reply = Callable[[Event], Event | None]
Output = Callable[[list["IrcMessage"]], bytes]  # one answer's lines to its bytes


def _clean(text: str) -> str:
    """Message text as chatd keeps it: a CTCP ACTION becomes `* text`, and C0 control
    characters (IRC formatting) go, as the line door removes them."""
    if text.isprintable():  # the common case: no control character to remove
        return text.strip()
    if text.startswith("\x01ACTION ") and len(text) > 8:
        text = "* " + text[8:].rstrip("\x01")
    return text.translate(_C0).strip()


def _chan_modes(room: bool) -> str:
    """A channel's modes: rooms are invite-only (`i`) and secret (`s`: only members
    see them in LIST, NAMES and WHOIS); #general is open to everyone."""
    return "+inst" if room else "+nt"


def _parse_ref(word: str) -> q.Ref | None:
    if word == "*":
        return q.Ref()
    kind, _, value = word.partition("=")
    if kind == "msgid" and value.isdigit():
        return q.Ref(id=int(value))
    if kind == "timestamp":
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return q.Ref(ts=when.timestamp())
    return None


class _IrcTransport(asyncio.Transport):
    """The socket's transport as the hub sees it: puts the recipient's nick where a
    rendered notice has a NUL, and holds everything until `release` (registration)."""

    def __init__(self, raw: asyncio.Transport) -> None:
        super().__init__()
        self.raw = raw
        self.nick = b"*"
        self.held: list[bytes] | None = []
        self.held_bytes = 0
        self.allowed: frozenset[bytes] | None = None  # tags the client may get (None: all)
        self.plain = False  # registered and every tag allowed: write's fast path

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.plain:  # the fan-out's path: one memchr and the socket's write
            if 0 in data:
                data = bytes(data).replace(irc.ME_BYTES, self.nick)
            self.raw.write(data)
            return
        if type(data) is not bytes:
            data = bytes(data)
        if irc.ME_BYTES in data:
            data = data.replace(irc.ME_BYTES, self.nick)
        if self.allowed is not None:
            data = irc.keep_tags(data, self.allowed)
        if self.held is not None:
            self.held.append(data)
            self.held_bytes += len(data)
            return
        self.raw.write(data)

    def release(self, first: bytes) -> None:
        held, self.held = self.held or [], None
        self.held_bytes = 0
        self.plain = self.allowed is None
        self.raw.write(first + b"".join(held))

    def allow(self, tags: frozenset[bytes] | None) -> None:
        """Only `tags` from now on (None: every tag)."""
        self.allowed = tags
        self.plain = tags is None and self.held is None

    def close(self) -> None:
        if self.held:
            self.release(b"")
        self.raw.close()

    def abort(self) -> None:
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def is_reading(self) -> bool:
        return self.raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() + self.held_bytes

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.raw.get_extra_info(name, default)


class IrcDoor:
    """What every IRC connection of a listener shares: the context, the renderer, the
    server's start time, and the open connections (for shutdown and counting)."""

    def __init__(self, ctx: Context, doorman: Doorman) -> None:
        self.ctx = ctx
        self.doorman = doorman  # limits per address, session ids, the daemon's counts
        self.renderer: Renderer = ctx.renderer
        self.connections: set[IrcConnection] = set()
        # account key -> (username, realname) its latest IRC connection gave in USER
        self.idents: dict[str, tuple[str, str]] = {}
        # account key -> away message (IRC's AWAY; chatd itself has no presence text)
        self.away: dict[str, str] = {}
        # account key -> chat key -> read marker an IRC client set with MARKREAD (memory
        # only: chatd's own read position is the durable one, see _marker)
        self.markers: dict[str, dict[str, float]] = {}
        self.created = datetime.fromtimestamp(ctx.clock(), UTC)
        self.most_users = 0  # the most sessions seen at once (LUSERS 265/266), since start
        # msgids of relays (TAGMSG): not message ids, unique across restarts by the start
        self.relay_ids = (f"t{int(ctx.clock())}-{n}" for n in itertools.count(1))
        # account key -> (nick, user, realname) of its last IRC connections, the oldest
        # first (WHOWAS); the least recently gone accounts are forgotten first
        self.whowas: OrderedDict[str, deque[tuple[str, str, str]]] = OrderedDict()
        self.configure()

    def gone(self, nick: str, user: str, real: str) -> None:
        """A registered IRC connection closed: what WHOWAS answers about it."""
        k = key(nick)
        entries = self.whowas.pop(k, None) or deque(maxlen=_WHOWAS_PER_NICK)
        entries.append((nick, user, real))
        self.whowas[k] = entries
        while len(self.whowas) > _WHOWAS_NICKS:
            self.whowas.popitem(last=False)

    def configure(self) -> None:
        cfg = self.ctx.config
        http = cfg.http
        file_url = ""
        if http.port:
            file_url = f"http://{http.host or cfg.server.host}:{http.port}/files/"
        name = cfg.irc.server_name
        self.renderer.irc = irc.IrcRenderer(server=name, host=name, file_url=file_url)

    def __call__(self) -> IrcConnection:
        return IrcConnection(self)


async def listen(ctx: Context, doorman: Doorman, ops: Operations) -> list[asyncio.Server]:
    """Binds `[irc] port` / `tls_port` (or the inherited `irc`/`irc-tls` sockets)."""
    cfg = ctx.config
    door = IrcDoor(ctx, doorman)
    return await ops.listen_door(
        "irc", cfg.irc.host or cfg.server.host, cfg.irc.port, door, tls_port=cfg.irc.tls_port
    )


class IrcConnection(asyncio.Protocol):
    """One IRC client: registration, then IRC commands as chatd Commands."""

    def __init__(self, door: IrcDoor) -> None:
        self.door = door
        self.ctx = door.ctx
        self.framer = irc.IrcFramer()
        self.ip = ""
        self.peer: Peer | None = None
        self.pipeline: Pipeline | None = None
        self.t: _IrcTransport | None = None
        self.caps: set[str] = set()
        self.cap_negotiating = False
        self.nick = ""
        self.user_given = False
        self.username = ""
        self.realname = ""
        self.password: str | None = None
        self.sasl_buf: str | None = None  # AUTHENTICATE data being collected
        self.sasl_ok = False
        self.login_pending = False
        self.registered = False
        self.fed = False  # a command went to the pipeline: answers must queue after it
        self.backlog: deque[str] = deque()  # lines that arrived while the login ran
        self.batches = itertools.count(1)
        self.last_seen = 0.0
        self.ping_sent = False
        self.timer: asyncio.TimerHandle | None = None
        self.replay_left = 0
        self.replay_top = 0  # highest message id replayed at login
        self.replay_batch: tuple[str, str] | None = None  # (ref, target) of an open batch

    # asyncio callbacks -------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, base)
        ctx, daemon = self.ctx, self.door.doorman
        peername = raw.get_extra_info("peername")
        self.ip = str(peername[0]) if isinstance(peername, tuple) else "local"
        refusal = daemon.admit(self.ip)
        if refusal is not None:
            raw.write(irc.render("ERROR", (f"Closing link: {refusal}",)))
            raw.close()
            return
        raw.set_write_buffer_limits(high=0)
        self.t = _IrcTransport(raw)
        limits = ctx.config.limits
        self.peer = Peer(
            daemon.next_session_id(),
            self.ip,
            ctx.clock(),
            mode=Mode.IRC,
            transport=self.t,
            buffer_limit=limits.send_buffer_bytes,
        )
        self.peer.paused = True  # until the welcome burst: see _IrcTransport
        self.pipeline = Pipeline(ctx, self.peer)
        self.door.connections.add(self)
        # The daemon's bookkeeping (connection limits, shutdown notice and drain, config
        # reloads) reads only `ip`, `peer` and `set_limits`, which this class has too.
        daemon.opened(self)
        self.last_seen = ctx.loop.time()
        self.timer = ctx.loop.call_later(limits.login_timeout_s, self._login_timeout)
        log.info("irc.opened", session=self.peer.id, peer=self.ip)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.closing:
            return
        self.ctx.metrics.bytes_in.value += len(data)
        self.last_seen = self.ctx.loop.time()
        self.ping_sent = False
        for item in self.framer.feed(data):
            if isinstance(item, IrcFrameError):
                self._answer([self._num(irc.ERR_INPUTTOOLONG, item.message)], None)
            elif self.login_pending:
                self.backlog.append(item)
            else:
                self._line(item)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        if self.pipeline is not None:
            self.pipeline.close()
        if exc is None and not peer.paused:
            peer.sent_id = max(peer.sent_id, peer.written_id)
        peer.transport = None
        peer.closing = True
        self.door.connections.discard(self)
        if self.registered:
            self.door.gone(self.nick, self.username or self.nick, self.realname or self.nick)
        acct = peer.account
        if acct is not None and len(acct.sessions) <= 1:
            self.door.away.pop(acct.key, None)  # the account's last session: back
        self.door.doorman.closed(self)  # closes the core's session
        log.info("irc.closed", session=peer.id, error=str(exc) if exc else None)

    def set_limits(self, max_line_bytes: int, burst: int, rate_per_s: float) -> None:
        """A config reload (the daemon calls it for every connection); IRC's line
        length is fixed by the protocol, the flood guard follows the config."""
        if self.pipeline is not None:
            self.pipeline.set_flood(burst, rate_per_s)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.paused = True

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and self.registered:
            peer.paused = False
            peer.sent_id = max(peer.sent_id, peer.written_id)
            peer.buffer_limit = self.ctx.config.limits.send_buffer_bytes

    # Output helpers ------------------------------------------------------------------

    @property
    def server(self) -> str:
        return self.ctx.config.irc.server_name

    @property
    def me(self) -> str:
        return self.nick or "*"

    def _num(self, code: str, *params: str) -> IrcMessage:
        return IrcMessage(code, (self.me, *params), self.server)

    def _fail(self, command: str, code: str, text: str) -> IrcMessage:
        return IrcMessage("FAIL", (command, code, text), self.server)

    def _fail_params(self, command: str, code: str, *params: str) -> IrcMessage:
        """A standard reply with context parameters before the text (the last one)."""
        return IrcMessage("FAIL", (command, code, *params), self.server)

    def _bytes(self, msgs: Iterable[IrcMessage], label: str | None) -> bytes:
        """Messages as bytes, labelled (IRCv3 labeled-response) when the command had a
        label: one line gets the tag, several a batch, none an ACK."""
        lines = msgs if isinstance(msgs, list) else list(msgs)
        if label is None or "labeled-response" not in self.caps:
            if not lines:  # a PRIVMSG's usual reply (no echo): nothing to render
                return b""
            return b"".join([m.render() for m in lines])
        if not lines:
            return irc.render("ACK", (), self.server, {"label": label})
        if len(lines) == 1:
            m = lines[0]
            return irc.render(m.command, m.params, m.source, {**m.tags, "label": label})
        ref = f"L{next(self.batches)}"
        out = [irc.render("BATCH", (f"+{ref}", "labeled-response"), self.server, {"label": label})]
        out += [irc.render(m.command, m.params, m.source, {**m.tags, "batch": ref}) for m in lines]
        out.append(irc.render("BATCH", (f"-{ref}",), self.server))
        return b"".join(out)

    def _write(self, data: bytes) -> None:
        """Straight to the socket: only before anything was fed to the pipeline."""
        if self.t is not None and data:
            if self.t.allowed is not None:
                data = irc.keep_tags(data, self.t.allowed)
            self.t.raw.write(data)

    def _answer(self, msgs: list[IrcMessage], label: str | None) -> None:
        self._query(lambda: msgs, label)

    def _query(self, make: Callable[[], list[IrcMessage]], label: str | None) -> None:
        """Answers computed by `make` when every earlier command has run, and written
        after their output: a pipeline `Query`."""
        self._query_bytes(lambda: self._bytes(make(), label))

    def _query_bytes(self, make: Callable[[], bytes]) -> None:
        if not self.fed:
            self._write(make())
            return
        self._feed_query(lambda: Outcome(replies=[Rendered(make())]), "irc")

    def _feed_query(self, run: Callable[[], Outcome], verb: str) -> None:
        """A door's own read, answered in order with the session's commands."""
        assert self.pipeline is not None
        self.fed = True
        self.pipeline.feed([Query(run, verb)])

    def _submit(
        self, cmd: c.Command | str, reply: Reply, done: Callable[[], None] | None = None
    ) -> None:
        assert self.pipeline is not None
        self.fed = True
        self.pipeline.feed([Submit(cmd, reply, done)])

    def _user_mask(self, name: str) -> str:
        return irc.hostmask(name, self.server)

    def _close(self, reason: str) -> None:
        if self.t is None or self.peer is None or self.peer.closing:
            return
        self.t.raw.write(irc.render("ERROR", (f"Closing link: {reason}",)))
        self.t.raw.close()

    # Input ------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        if irc.client_tags_too_long(line):
            self._answer([self._num(irc.ERR_INPUTTOOLONG, "Input line was too long")], None)
            return
        try:
            msg = irc.parse(line)
        except IrcParseError:
            return
        label = msg.tags.get("label") if "labeled-response" in self.caps else None
        handler = _PRE.get(msg.command)
        if handler is None and self.registered:
            handler = _POST.get(msg.command)
        if handler is None:
            if not self.registered and msg.command in _POST:
                self._answer([self._num(irc.ERR_NOTREGISTERED, "You have not registered")], label)
            else:
                text = "Unknown command"
                self._answer([self._num(irc.ERR_UNKNOWNCOMMAND, msg.command, text)], label)
            return
        try:
            handler(self, msg, label)
        except Exception:
            log.exception("irc.command_failed", command=msg.command)
            self._answer([self._fail(msg.command, "INTERNAL", "internal error; logged")], label)

    def _need(self, msg: IrcMessage, n: int, label: str | None) -> bool:
        if len(msg.params) >= n and all(msg.params[:n]):
            return True
        self._answer(
            [self._num(irc.ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")], label
        )
        return False

    # Registration -----------------------------------------------------------------

    def cmd_cap(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 1, label):
            return
        sub = msg.params[0].upper()
        me = self.me
        if sub == "LS":
            if not self.registered:
                self.cap_negotiating = True
            v302 = len(msg.params) > 1 and msg.params[1].isdigit() and int(msg.params[1]) >= 302
            caps = " ".join(f"{k}={v}" if v and v302 else k for k, v in CAPS.items())
            self._answer([IrcMessage("CAP", (me, "LS", caps), self.server)], label)
        elif sub == "LIST":
            self._answer(
                [IrcMessage("CAP", (me, "LIST", " ".join(sorted(self.caps))), self.server)], label
            )
        elif sub == "REQ":
            if not self.registered:
                self.cap_negotiating = True
            wanted = msg.params[1].split() if len(msg.params) > 1 else []
            names = [w.removeprefix("-") for w in wanted]
            if not wanted or any(n not in CAPS for n in names):
                self._answer([IrcMessage("CAP", (me, "NAK", " ".join(wanted)), self.server)], label)
                return
            for w in wanted:
                if w.startswith("-"):
                    self.caps.discard(w[1:])
                else:
                    self.caps.add(w)
            self._set_mode()
            self._answer([IrcMessage("CAP", (me, "ACK", " ".join(wanted)), self.server)], label)
        elif sub == "END":
            self.cap_negotiating = False
            self._try_register()
        else:
            self._answer([self._num("410", sub, "Invalid CAP command")], label)

    def _set_mode(self) -> None:
        if self.peer is None:
            return
        allowed: frozenset[bytes] | None = None
        if "message-tags" in self.caps or "account-tag" in self.caps:
            self.peer.mode = Mode.IRC_TAGS
            if "message-tags" not in self.caps:  # account-tag alone: no msgid, no +tags
                time = {b"time"} if "server-time" in self.caps else set()
                allowed = frozenset({b"account", b"batch", b"label", *time})
        elif "server-time" in self.caps:
            self.peer.mode = Mode.IRC_TIME
        else:
            self.peer.mode = Mode.IRC
        if self.t is not None:
            self.t.allow(allowed)

    def cmd_pass(self, msg: IrcMessage, label: str | None) -> None:
        if self.registered:
            self._answer([self._num(irc.ERR_ALREADYREGISTERED, "You may not reregister")], label)
        elif self._need(msg, 1, label):
            self.password = msg.params[0]

    def cmd_nick(self, msg: IrcMessage, label: str | None) -> None:
        if not msg.params or not msg.params[0]:
            self._answer([self._num(irc.ERR_NONICKNAMEGIVEN, "No nickname given")], label)
            return
        nick = msg.params[0]
        if not valid_name(nick):
            text = "Erroneous nickname: 1-32 of A-Z a-z 0-9 _ . -"
            self._answer([self._num(irc.ERR_ERRONEUSNICKNAME, nick, text)], label)
            return
        if self.registered:
            if nick != self.nick:
                text = "In chatd your nick is your account; connect again to use another"
                self._answer([self._num(irc.ERR_NICKNAMEINUSE, nick, text)], label)
            return
        self.nick = nick
        self._try_register()

    def cmd_user(self, msg: IrcMessage, label: str | None) -> None:
        if self.registered:
            self._answer([self._num(irc.ERR_ALREADYREGISTERED, "You may not reregister")], label)
        elif len(msg.params) < 4 or not msg.params[0] or not msg.params[3]:
            self._answer(
                [self._num(irc.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")], label
            )
        else:
            self.user_given = True
            self.username, self.realname = msg.params[0], msg.params[3]
            self._try_register()

    def cmd_authenticate(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 1, label):
            return
        arg = msg.params[0]
        if self.registered:  # the nick is the account: no other login on this connection
            text = "You may not reregister (the nick is the account)"
            self._answer([self._num(irc.ERR_ALREADYREGISTERED, text)], label)
            return
        if self.sasl_ok:
            self._write(
                self._bytes(
                    [self._num(irc.ERR_SASLALREADY, "You have already authenticated")], None
                )
            )
            return
        if arg == "*":
            self.sasl_buf = None
            self._write(
                self._bytes([self._num(irc.ERR_SASLABORTED, "SASL authentication aborted")], None)
            )
            return
        if self.sasl_buf is None:
            if arg.upper() != "PLAIN":
                self._write(
                    self._bytes(
                        [self._num(irc.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")],
                        None,
                    )
                )
                self._write(
                    self._bytes([self._num(irc.ERR_SASLFAIL, "SASL authentication failed")], None)
                )
                return
            self.sasl_buf = ""
            self._write(irc.render("AUTHENTICATE", ("+",)))
            return
        if len(arg) > 400:
            self.sasl_buf = None
            self._write(
                self._bytes([self._num(irc.ERR_SASLTOOLONG, "SASL message too long")], None)
            )
            return
        if arg != "+":
            self.sasl_buf += arg
        if len(self.sasl_buf) > _SASL_MAX:
            self.sasl_buf = None
            self._write(
                self._bytes([self._num(irc.ERR_SASLFAIL, "SASL authentication failed")], None)
            )
            return
        if len(arg) == 400:
            return  # more chunks follow
        data, self.sasl_buf = self.sasl_buf, None
        try:
            parts = base64.b64decode(data, validate=True).decode().split("\0")
        except (binascii.Error, UnicodeDecodeError):
            parts = []
        if len(parts) != 3 or not parts[1]:
            self._write(
                self._bytes([self._num(irc.ERR_SASLFAIL, "SASL authentication failed")], None)
            )
            return
        _authzid, account, password = parts
        self._login(account, password, sasl=True)

    def _try_register(self) -> None:
        if self.registered or self.login_pending or self.cap_negotiating:
            return
        if not self.nick or not self.user_given:
            return
        peer = self.peer
        assert peer is not None
        if peer.account is not None:  # SASL logged in already
            self._welcome()
            return
        self._login(self.nick, self.password, sasl=False)

    def _login(self, name: str, password: str | None, *, sasl: bool) -> None:
        """The core's `login`: its replay goes to the held transport; its refusal
        becomes 433/464 (or 904 for SASL) and the client may try again."""
        self.login_pending = True
        self._set_mode()
        self.replay_left = 0

        def reply(event: Event) -> Event | None:
            if isinstance(event, Ok) and event.name == "login":
                self.replay_left = int(event.fields["unread"])
                if sasl:
                    self.sasl_ok = True
                    acct = str(event.fields["user"])
                    self._write(
                        self._bytes(
                            [
                                self._num(
                                    irc.RPL_LOGGEDIN,
                                    self._user_mask(acct),
                                    acct,
                                    f"You are now logged in as {acct}",
                                ),
                                self._num(irc.RPL_SASLSUCCESS, "SASL authentication successful"),
                            ],
                            None,
                        )
                    )
                return None
            if isinstance(event, Push) and event.replay:
                # Rendered, not Push, so the hub cannot count it as received: do it
                # at the welcome, when the replay is handed to the socket.
                self.replay_top = max(self.replay_top, event.message.id)
                return Rendered(self._replay(event))
            if isinstance(event, Notice):
                return Rendered(self.door.renderer.irc.notice(event, self._mode()))
            if isinstance(event, Error):
                self._write(self._bytes(self._login_refused(event, name, password, sasl), None))
            return None

        def done() -> None:
            self.login_pending = False
            if self.peer is not None and self.peer.account is not None:
                self._try_register()
            backlog, self.backlog = self.backlog, deque()
            for line in backlog:
                if self.login_pending:
                    self.backlog.append(line)
                else:
                    self._line(line)

        self._submit(c.Login(name, password, verb="login"), reply, done)

    def _login_refused(
        self, err: Error, name: str, password: str | None, sasl: bool
    ) -> list[IrcMessage]:
        if sasl:
            return [self._num(irc.ERR_SASLFAIL, f"SASL authentication failed: {err.message}")]
        if err.code == Code.BAD_PASSWORD and password is None:
            if key(name) in self.ctx.chat.accounts:
                text = f"{name} has a password: give it (PASS or SASL), or pick another nick"
                return [self._num(irc.ERR_NICKNAMEINUSE, name, text)]
            return [self._num(irc.ERR_PASSWDMISMATCH, err.message)]
        if err.code == Code.BAD_PASSWORD:
            return [self._num(irc.ERR_PASSWDMISMATCH, err.message)]
        if err.code == Code.BAD_NAME:
            return [self._num(irc.ERR_ERRONEUSNICKNAME, name, err.message)]
        if err.code == Code.TOO_MANY_SESSIONS:
            return [self._num(irc.ERR_NICKNAMEINUSE, name, err.message)]
        retry = f" (retry in {err.retry_after:g}s)" if err.retry_after is not None else ""
        return [self._fail("NICK", str(err.code).upper().replace("-", "_"), err.message + retry)]

    def _mode(self) -> Mode:
        return self.peer.mode if self.peer is not None else Mode.IRC

    def _replay(self, push: Push) -> bytes:
        """One unread message replayed at login: with server-time in a `chathistory`
        batch per run of one target, else a plain PRIVMSG with `[HH:MM:SS]` before the
        text."""
        r = self.door.renderer
        mode = self._mode()
        out = b""
        self.replay_left -= 1
        if mode is Mode.IRC:
            out = r.irc.push(push, mode, prefix=f"[{r.clock(push.message.ts)}] ")
        else:
            target = r.irc.target(push.message)
            if "batch" in self.caps:
                if self.replay_batch is None or self.replay_batch[1] != target:
                    out += self._end_replay_batch()
                    ref = f"R{next(self.batches)}"
                    self.replay_batch = (ref, target)
                    out += irc.render("BATCH", (f"+{ref}", "chathistory", target), self.server)
                out += r.irc.push(push, mode, batch=self.replay_batch[0])
            else:
                out = r.irc.push(push, mode)
        if self.replay_left <= 0:
            out += self._end_replay_batch()
        return out

    def _end_replay_batch(self) -> bytes:
        if self.replay_batch is None:
            return b""
        ref, self.replay_batch = self.replay_batch[0], None
        return irc.render("BATCH", (f"-{ref}",), self.server)

    def _welcome(self) -> None:
        """001-005, the MOTD, the channels the account is in; then what was held (the
        unread replay, anything live since the login)."""
        peer, t = self.peer, self.t
        assert peer is not None and t is not None and peer.account is not None
        acct = peer.account
        self.nick = acct.name
        self.registered = True
        self.door.idents[acct.key] = (self.username or acct.name, self.realname or acct.name)
        t.nick = acct.name.encode()
        if self.timer is not None:
            self.timer.cancel()
        interval = self.ctx.config.irc.ping_interval_s
        self.timer = self.ctx.loop.call_later(interval, self._ping_check)
        cfg = self.ctx.config
        tokens = [
            "CASEMAPPING=ascii",
            "CHANTYPES=#",
            "CHANMODES=,,,inst",
            "PREFIX=(ov)@+",  # no one has +v in chatd; clients expect both
            "NICKLEN=32",
            "CHANNELLEN=33",
            "TOPICLEN=0",
            f"NETWORK={self.server}",
            "WHOX",
            f"CHATHISTORY={cfg.chat.history_max}",
            "MSGREFTYPES=msgid,timestamp",
            "TARGMAX=PRIVMSG:1,NOTICE:1,JOIN:,PART:,NAMES:1,WHOIS:1",
        ]
        lines = [
            self._num(irc.RPL_WELCOME, f"Welcome to chatd, {acct.name}"),
            self._num(irc.RPL_YOURHOST, f"Your host is {self.server}, running chatd-{__version__}"),
            self._num(
                irc.RPL_CREATED,
                f"This server was created {self.door.created:%Y-%m-%d %H:%M:%S} UTC",
            ),
            self._num(irc.RPL_MYINFO, self.server, f"chatd-{__version__}", "i", "inostv"),
            self._num(irc.RPL_ISUPPORT, *tokens, "are supported by this server"),
            *self._lusers(),
            *self._motd(),
        ]
        for chan, _, _ in q.channels(self.ctx.chat, acct):
            lines += self._join_lines(chan)
        peer.paused = False
        t.release(self._bytes(lines, None))
        peer.written_id = max(peer.written_id, self.replay_top)
        if t.raw.get_write_buffer_size() == 0:
            peer.sent_id = max(peer.sent_id, peer.written_id)
        else:
            peer.paused = True
        log.info("irc.registered", session=peer.id, user=acct.name, caps=sorted(self.caps))

    def _ident(self, name: str) -> tuple[str, str]:
        return self.door.idents.get(key(name), (name, name))

    def _lusers(self) -> list[IrcMessage]:
        chat, door = self.ctx.chat, self.door
        users = sum(len(a.sessions) for a in chat.online.values())
        door.most_users = most = max(door.most_users, users)
        unknown = sum(1 for conn in door.connections if not conn.registered)
        return [
            self._num("251", f"There are {users} users and 0 invisible on 1 servers"),
            *([self._num("253", str(unknown), "unknown connection(s)")] if unknown else []),
            self._num("254", str(len(chat.rooms) + 1), "channels formed"),
            self._num("255", f"I have {users} clients and 0 servers"),
            self._num("265", str(users), str(most), f"Current local users {users}, max {most}"),
            self._num("266", str(users), str(most), f"Current global users {users}, max {most}"),
        ]

    def _motd(self) -> list[IrcMessage]:
        motd = self.ctx.config.irc.motd
        if not motd:
            return [self._num(irc.ERR_NOMOTD, "MOTD File is missing")]
        lines = [self._num(irc.RPL_MOTDSTART, f"- {self.server} Message of the day - ")]
        lines += [self._num(irc.RPL_MOTD, f"- {x}") for x in motd.split("\n")]
        lines.append(self._num(irc.RPL_ENDOFMOTD, "End of /MOTD command."))
        return lines

    def _join_lines(self, chan: str) -> list[IrcMessage]:
        """JOIN, a MARKREAD for read-marker clients, and NAMES, as a server sends them
        when a client joins."""
        lines = [IrcMessage("JOIN", (chan,), self._user_mask(self.nick))]
        lines += self._markread_lines(chan)
        lines += self._names(chan)
        return lines

    def _names(self, chan: str) -> list[IrcMessage]:
        acct = self._account()
        try:
            chan, members = q.members(self.ctx.chat, acct, chan)
        except Refused:
            return [self._num(irc.RPL_ENDOFNAMES, chan, "End of /NAMES list.")]
        out: list[IrcMessage] = []
        batch: list[str] = []
        size = 0
        symbol = "=" if chan == GENERAL else "@"  # rooms are secret (+s)
        for m in members:
            word = ("@" if m.op else "") + m.name
            if "userhost-in-names" in self.caps:
                word += f"!{m.name}@{self.server}"
            if size + len(word) > 400:
                out.append(self._num(irc.RPL_NAMREPLY, symbol, chan, " ".join(batch)))
                batch, size = [], 0
            batch.append(word)
            size += len(word) + 1
        if batch:
            out.append(self._num(irc.RPL_NAMREPLY, symbol, chan, " ".join(batch)))
        out.append(self._num(irc.RPL_ENDOFNAMES, chan, "End of /NAMES list."))
        return out

    def _markread_lines(self, target: str) -> list[IrcMessage]:
        if "draft/read-marker" not in self.caps:
            return []
        try:
            ck = q.chat_key(self.ctx.chat, self._account(), target)
        except Refused:
            return []
        return [self._markread(target, self._marker(ck))]

    def _marker(self, ck: str) -> float | None:
        """A chat's read marker: the later of the last message of it the account
        received (chatd's read position, moved by delivery) and what one of its IRC
        clients set with MARKREAD."""
        acct = self._account()
        m = q.read_marker(self.ctx.chat, acct, ck)
        ts = m[1] if m is not None else None
        mine = self.door.markers.get(acct.key, {}).get(ck)
        if mine is not None and (ts is None or mine > ts):
            return mine
        return ts

    def _markread(self, target: str, ts: float | None) -> IrcMessage:
        stamp = f"timestamp={rfc3339(ts)}" if ts is not None else "*"
        return IrcMessage("MARKREAD", (target, stamp), self.server)

    def _registered(self, name: str) -> str:
        """The account name when it has a password, else "": IRC's idea of a nick that
        is logged in (a chatd account without a password is anyone's to use)."""
        acct = self.ctx.chat.accounts.get(key(name))
        return acct.name if acct is not None and acct.pw_hash else ""

    def _account(self) -> Any:
        peer = self.peer
        assert peer is not None and peer.account is not None
        return peer.account

    def _login_timeout(self) -> None:
        if not self.registered:
            timeout = self.ctx.config.limits.login_timeout_s
            self._close(f"no registration within {timeout:g}s")

    def _ping_check(self) -> None:
        loop = self.ctx.loop
        interval = self.ctx.config.irc.ping_interval_s
        if self.peer is None or self.peer.closing:
            return
        idle = loop.time() - self.last_seen
        if idle >= interval:
            if self.ping_sent:
                self._close(f"Ping timeout: {idle:.0f} seconds")
                return
            self.ping_sent = True
            if self.t is not None:
                self.t.write(irc.render("PING", (self.server,)))
            self.timer = loop.call_later(interval, self._ping_check)
            return
        self.timer = loop.call_later(interval - idle, self._ping_check)

    # Always available -------------------------------------------------------------

    def cmd_ping(self, msg: IrcMessage, label: str | None) -> None:
        if not msg.params:
            self._answer([self._num("409", "No origin specified")], label)
            return
        server = self.server
        pipeline, peer = self.pipeline, self.peer
        if self.registered and pipeline is not None and peer is not None and pipeline.idle:
            # Nothing of this session is waiting in the pipeline, so queueing the PONG
            # in the open batch keeps it in order; no need to run a command for it
            # (bots and the benchmark send a PING after every PRIVMSG).
            if label is None:
                data = irc.render("PONG", (server, msg.params[0]), server)
            else:
                data = self._bytes([IrcMessage("PONG", (server, msg.params[0]), server)], label)
            self.ctx.apply(peer, Outcome(replies=[Rendered(data)]))
            return
        self._answer([IrcMessage("PONG", (server, msg.params[0]), server)], label)

    def cmd_pong(self, msg: IrcMessage, label: str | None) -> None:
        self.ping_sent = False
        if label is not None:  # labeled-response: a command without a reply gets ACK
            self._answer([], label)

    def cmd_quit(self, msg: IrcMessage, label: str | None) -> None:
        reason = msg.params[0] if msg.params else "Client quit"
        if self.peer is None or self.peer.account is None:
            self._close(reason)
            return
        line = irc.render("ERROR", (f"Closing link: {reason}",))
        self._submit(c.Quit(verb="quit"), lambda e: Rendered(line) if isinstance(e, Ok) else None)

    # After registration: messages ------------------------------------------------

    def cmd_privmsg(self, msg: IrcMessage, label: str | None, *, notice: bool = False) -> None:
        if not msg.params or not msg.params[0]:
            if not notice:
                self._answer(
                    [self._num(irc.ERR_NORECIPIENT, f"No recipient given ({msg.command})")], label
                )
            return
        text = _clean(msg.params[1]) if len(msg.params) > 1 else ""
        if not text:
            if not notice:
                self._answer([self._num(irc.ERR_NOTEXTTOSEND, "No text to send")], label)
            return
        target = msg.params[0]
        if target.lower() == self.ctx.config.irc.service_nick.lower():
            if not notice:  # a NOTICE never gets an automatic answer (RFC 2812)
                self._service(text, label)
            return
        reply_to = msg.tags.get(irc.REPLY_TAG, "")
        # Kept with the message (Message.tags/.kind): its client-only tags, and that it
        # is a NOTICE, so that it is delivered, echoed and replayed as it was sent.
        tags = irc.client_tags(msg.tags) if msg.tags else ""
        kind = NOTICE_KIND if notice else ""
        cmd: c.Command
        if reply_to.isdigit():
            cmd = c.Comment(int(reply_to), text, tags, kind, verb="comment")
        elif target.lower() == GENERAL:
            cmd = c.SendAll(text, tags, kind, verb="send_all")
        else:
            cmd = c.Send(target, text, tags, kind, verb="send")
        command = msg.command
        to_self = key(target) == key(self.nick)

        def reply(event: Event) -> Event | None:
            if isinstance(event, Ok):
                echo: list[IrcMessage] = []
                if "echo-message" in self.caps:
                    echo = self._echo(command, target, text, event, tags)
                # To oneself: the delivery too, after the echo and without the label
                # (labeled-response labels the echo only).
                own = self._echo(command, target, text, event, tags) if to_self else []
                if not echo:
                    echo, own = own, []
                away = self.door.away.get(key(target)) if self.door.away else None
                if away is not None and not notice:
                    echo.append(self._num(irc.RPL_AWAY, target, away))
                # Even empty: the reply must reach the hub, which counts the sent
                # message as received by this session (no replay of one's own words).
                data = self._bytes(echo, label)
                return Rendered(data + b"".join(m.render() for m in own) if own else data)
            if isinstance(event, Error) and not notice:
                return Rendered(self._bytes([self._send_refusal(event, target)], label))
            return None

        self._submit(cmd, reply)

    def cmd_notice(self, msg: IrcMessage, label: str | None) -> None:
        self.cmd_privmsg(msg, label, notice=True)

    def cmd_tagmsg(self, msg: IrcMessage, label: str | None) -> None:
        """Client-only tags (typing, reactions) relayed by the core's `relay` to the
        target's clients that have message-tags, never stored; errors as PRIVMSG's."""
        if not self._need(msg, 1, label):
            return
        target = msg.params[0]
        tags = tuple((k, v) for k, v in msg.tags.items() if k.startswith("+"))
        if not tags or target.lower() == self.ctx.config.irc.service_nick.lower():
            self._answer([], label)  # nothing to relay (IRCv3: then drop it)
            return
        cmd = c.Relay(target, tags, next(self.door.relay_ids), verb="tagmsg")
        to_self = key(target) == key(self.nick)
        r = self.door.renderer.irc

        def reply(event: Event) -> Event | None:
            if isinstance(event, Ok):
                f = event.fields
                line = r.tagmsg_message(self.nick, str(f["target"]), tags, f["ts"], f["ref"])
                tagged = "message-tags" in self.caps
                echo = [line] if tagged and "echo-message" in self.caps else []
                own = [line] if tagged and to_self else []  # as a PRIVMSG to oneself
                if not echo:
                    echo, own = own, []
                data = self._bytes(echo, label)
                return Rendered(data + b"".join(m.render() for m in own) if own else data)
            if isinstance(event, Error):
                return Rendered(self._bytes([self._send_refusal(event, target)], label))
            return None

        self._submit(cmd, reply)

    def _echo(
        self, command: str, target: str, text: str, ok: Ok, client: str = ""
    ) -> list[IrcMessage]:
        """The sender's copy of its message, tagged as the others get it (`client`:
        the client-only tags kept with it)."""
        mode = self._mode()
        tags: dict[str, str] = {}
        if mode is not Mode.IRC:
            tags["time"] = str(ok.fields.get("ts", ""))
        if mode is Mode.IRC_TAGS:
            tags["msgid"] = str(ok.fields.get("id", ""))
            tags["account"] = self.nick
            if "reply_to" in ok.fields:
                tags[irc.REPLY_TAG] = str(ok.fields["reply_to"])
            if client:
                tags.update(irc.parse_client_tags(client))
        if ok.name == "comment":
            m = self.ctx.chat.recent.get(int(ok.fields["id"]))  # just sent: in the window
            if m is not None:
                target = self.door.renderer.irc.target(m)
        return [IrcMessage(command, (target, text), self._user_mask(self.nick), tags)]

    def _send_refusal(self, err: Error, target: str) -> IrcMessage:
        """A refused PRIVMSG or TAGMSG: IRC's +n (not on it, cannot send to it) for a
        room one is not in, else the refusal's own numeric."""
        if err.code == Code.NOT_A_MEMBER:
            why = f"Cannot send to channel: {err.message}"
            return self._num(irc.ERR_CANNOTSENDTOCHAN, target, why)
        return self._error(err, target)

    def _error(self, err: Error, subject: str) -> IrcMessage:
        """A refused command as its numeric, or as a standard FAIL reply."""
        retry = f" (retry in {err.retry_after:g}s)" if err.retry_after is not None else ""
        text = err.message + retry
        numeric = _NUMERIC.get(err.code)
        if numeric is None:
            code = str(err.code).upper().replace("-", "_")
            return self._fail((err.cmd or "*").upper(), code, text)
        if numeric in (irc.ERR_NOTREGISTERED, irc.ERR_PASSWDMISMATCH):
            return self._num(numeric, text)
        if numeric == irc.ERR_NOSUCHCHANNEL and not subject.startswith("#"):
            numeric = irc.ERR_NOSUCHNICK
        return self._num(numeric, subject, text)

    def _service(self, text: str, label: str | None) -> None:
        """`/msg chatd <line-protocol command>`: run it, answer with NOTICEs."""
        verb, _, rest = text.partition(" ")
        verb = verb.lower()
        service = self.ctx.config.irc.service_nick
        source = irc.hostmask(service, self.server)

        def notices(lines: Iterable[str]) -> list[IrcMessage]:
            return [IrcMessage("NOTICE", (self.nick, line or " "), source) for line in lines]

        if verb in _SERVICE_REFUSED:
            how = "files: the HTTP door" if verb in ("upload", "download") else "IRC's own commands"
            self._answer(notices([f"{verb} is not available over IRC; use {how}"]), label)
            return
        if verb == "schedule":
            when, _, inner = rest.strip().partition(" ")
            first = inner.split(None, 1)[0].lower() if inner.strip() else ""
            if inner.strip() and first not in ("send_all", "send", "comment"):
                text = f"schedule {when} send_all {inner.strip()}"
        renderer = self.door.renderer

        def reply(event: Event) -> Event | None:
            if isinstance(event, Push | Ok | Error | Notice):
                data = renderer.text(event)
            else:
                return None
            lines = data.decode().rstrip("\n").split("\n")
            return Rendered(self._bytes(notices(lines), label))

        self._submit(text, reply)

    # After registration: channels -------------------------------------------------

    def cmd_join(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 1, label):
            return
        chans = msg.params[0].split(",")
        keys = msg.params[1].split(",") if len(msg.params) > 1 else []
        outs = self._outputs(len(chans), label)
        for i, chan in enumerate(chans):
            self._join(chan, keys[i] if i < len(keys) else "", outs[i])

    def _outputs(self, n: int, label: str | None) -> list[Output]:
        """How each of the `n` answers to one command (a JOIN or PART of several
        channels) is written: with a label, all of them in one labeled-response batch
        that the first opens and the last closes (IRCv3 labeled-response)."""
        if n == 1 or label is None or "labeled-response" not in self.caps:
            one = label if n == 1 else None
            return [lambda lines: self._bytes(lines, one)] * n
        ref = f"L{next(self.batches)}"

        def output(i: int) -> Output:
            def write(lines: list[IrcMessage]) -> bytes:
                out = [
                    irc.render(m.command, m.params, m.source, {**m.tags, "batch": ref})
                    for m in lines
                ]
                if i == 0:
                    start = (f"+{ref}", "labeled-response")
                    out.insert(0, irc.render("BATCH", start, self.server, {"label": label or ""}))
                if i == n - 1:
                    out.append(irc.render("BATCH", (f"-{ref}",), self.server))
                return b"".join(out)

            return write

        return [output(i) for i in range(n)]

    def _join(self, chan: str, link: str, out: Output) -> None:
        if chan == "0":
            text = "#general cannot be left; PART rooms one by one"
            self._query_bytes(lambda: out([self._fail("JOIN", "CANNOT_LEAVE", text)]))
            return
        if not chan.startswith("#"):
            self._query_bytes(
                lambda: out([self._num(irc.ERR_NOSUCHCHANNEL, chan, "No such channel")])
            )
            return
        acct = self._account()
        lower = chan.lower()
        room = self.ctx.chat.rooms.get(lower)
        if lower == GENERAL or (room is not None and acct.key in room.members):
            self._query_bytes(lambda: out(self._join_lines(lower)))
            return
        if room is None:  # IRC's way: joining a channel that does not exist creates it
            cmd: c.Command = c.Room("create", chan, None, verb="room")
        elif acct.key in room.invites:  # an invitation waiting (rooms.invite_consent)
            cmd = c.Room("accept", chan, None, verb="room")
        elif link:
            cmd = c.Join(link, verb="join")
        else:
            cmd = c.Who(chan, verb="who")  # the core says not-a-member

        def reply(event: Event) -> Event | None:
            if isinstance(event, Ok) and event.name == "join":
                room = event.fields["room"]
                text = f"asked the owner of {room} to let you in; you join once they approve"
                return Rendered(out([IrcMessage("NOTICE", (self.nick, text), self.server)]))
            if isinstance(event, Ok):
                return Rendered(out(self._join_lines(str(event.fields.get("room", lower)))))
            if isinstance(event, Error):
                if event.code == Code.NOT_A_MEMBER:
                    text = "Cannot join channel (+i): a room needs an invite, or JOIN #room <link>"
                    return Rendered(out([self._num(irc.ERR_INVITEONLYCHAN, chan, text)]))
                if event.code == Code.BAD_NAME:
                    return Rendered(out([self._num("479", chan, event.message)]))
                if link and event.code == Code.NO_SUCH_CHAT:  # the key is a join link
                    text = f"Cannot join channel (+k): {event.message}"
                    return Rendered(out([self._num(irc.ERR_BADCHANNELKEY, chan, text)]))
                return Rendered(out([self._error(event, chan)]))
            return None

        self._submit(cmd, reply)

    def cmd_part(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 1, label):
            return
        reason = msg.params[1] if len(msg.params) > 1 else ""
        chans = msg.params[0].split(",")
        for chan, out in zip(chans, self._outputs(len(chans), label), strict=True):
            if chan.lower() == GENERAL:
                fail = self._fail("PART", "CANNOT_LEAVE", "#general cannot be left: all are in it")
                self._query_bytes(functools.partial(out, [fail]))
                continue

            def reply(event: Event, chan: str = chan, out: Output = out) -> Event | None:
                if isinstance(event, Ok):
                    room = str(event.fields.get("room", chan))
                    params = (room, reason) if reason else (room,)
                    return Rendered(out([IrcMessage("PART", params, self._user_mask(self.nick))]))
                if isinstance(event, Error):
                    return Rendered(out([self._error(event, chan)]))
                return None

            self._submit(c.Room("leave", chan, None, verb="room"), reply)

    def cmd_names(self, msg: IrcMessage, label: str | None) -> None:
        if not msg.params:
            self._answer([self._num(irc.RPL_ENDOFNAMES, "*", "End of /NAMES list.")], label)
            return
        chan = msg.params[0].split(",")[0]
        self._query(lambda: self._names(chan), label)

    def cmd_topic(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 1, label):
            return
        chan = msg.params[0]

        def make() -> list[IrcMessage]:
            try:
                q.members(self.ctx.chat, self._account(), chan)
            except Refused as e:
                return [self._error(Error(e.code, e.message, "topic"), chan)]
            if len(msg.params) > 1:
                return [self._num(irc.ERR_CHANOPRIVSNEEDED, chan, "Topics are read-only in chatd")]
            return [self._num(irc.RPL_NOTOPIC, chan, "No topic is set")]

        self._query(make, label)

    def cmd_mode(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 1, label):
            return
        target = msg.params[0]
        chat = self.ctx.chat

        def make() -> list[IrcMessage]:
            if not target.startswith("#"):
                return self._user_mode(target, msg.params[1:])
            try:
                chan, _ = q.members(chat, self._account(), target)
            except Refused as e:
                return [self._error(Error(e.code, e.message, "mode"), target)]
            room = chat.rooms.get(chan)
            if len(msg.params) == 1:
                created = int(room.created if room is not None else chat.started)
                return [
                    self._num(irc.RPL_CHANNELMODEIS, chan, _chan_modes(room is not None)),
                    self._num(irc.RPL_CREATIONTIME, chan, str(created)),
                ]
            return self._chan_mode_change(chan, room is not None, msg.params[1], msg.params[2:])

        self._query(make, label)

    def _user_mode(self, nick: str, args: tuple[str, ...]) -> list[IrcMessage]:
        chat = self.ctx.chat
        if key(nick) != key(self.nick):
            if key(nick) not in chat.accounts:
                return [self._num(irc.ERR_NOSUCHNICK, nick, "No such nick")]
            return [self._num(irc.ERR_USERSDONTMATCH, "Can't change mode for other users")]
        if not args:
            return [self._num(irc.RPL_UMODEIS, "+i")]
        flags = args[0].replace("+", "").replace("-", "")
        if flags and set(flags) <= {"i"}:
            return []  # +i is always set and cannot be unset: nothing changes
        return [self._num(irc.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")]

    def _chan_mode_change(
        self, chan: str, is_room: bool, modes: str, args: tuple[str, ...]
    ) -> list[IrcMessage]:
        """A MODE change on a channel: chatd's channel modes are fixed (`+nt`, rooms
        `+inst`, the owner as the one op), so a change is refused with the numeric IRC
        gives for it, the owner setting a mode that is set gets it confirmed (a MODE
        line to them alone: nothing changed for the others), and list queries answer
        empty lists."""
        chat, acct = self.ctx.chat, self._account()
        room = chat.rooms.get(chan)
        owner = room is not None and room.owner == acct.key
        fixed = _chan_modes(is_room)[1:]
        out: list[IrcMessage] = []
        lists = {
            "b": ("368", "End of channel ban list"),
            "e": ("349", "End of channel exception list"),
            "I": ("347", "End of channel invite list"),
        }
        adding, queue, confirmed = True, list(args), ""
        for ch in modes:
            if ch in "+-":
                adding = ch == "+"
            elif ch in lists and not queue:
                out.append(self._num(lists[ch][0], chan, lists[ch][1]))
            elif ch in "ov":
                nick = queue.pop(0) if queue else ""
                if not nick:
                    out.append(self._num(irc.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters"))
                elif key(nick) not in chat.accounts:
                    out.append(self._num(irc.ERR_NOSUCHNICK, nick, "No such nick"))
                elif room is not None and key(nick) not in room.members:
                    text = "They aren't on that channel"
                    out.append(self._num(irc.ERR_USERNOTINCHANNEL, nick, chan, text))
                else:
                    text = "A room has one op, its owner; ownership passes when the owner leaves"
                    out.append(self._num(irc.ERR_CHANOPRIVSNEEDED, chan, text))
            elif ch in lists or ch not in "intklmsp":
                if ch in lists:
                    queue.pop(0)
                    text = "Channel ban, exception and invite lists are empty in chatd"
                    out.append(self._num(irc.ERR_CHANOPRIVSNEEDED, chan, text))
                else:
                    out.append(self._num(irc.ERR_UNKNOWNMODE, ch, "is unknown mode char to me"))
            elif not owner:
                text = "You're not channel operator"
                out.append(self._num(irc.ERR_CHANOPRIVSNEEDED, chan, text))
            elif adding and ch in fixed:
                confirmed += "" if ch in confirmed else ch
            else:
                text = f"Channel modes are fixed in chatd ({_chan_modes(is_room)})"
                out.append(self._num(irc.ERR_CHANOPRIVSNEEDED, chan, text))
        if confirmed:
            out.append(IrcMessage("MODE", (chan, f"+{confirmed}"), self._user_mask(self.nick)))
        return out

    def cmd_who(self, msg: IrcMessage, label: str | None) -> None:
        mask = msg.params[0] if msg.params else "*"
        fields, token = "", ""
        if len(msg.params) > 1 and msg.params[1].startswith("%"):
            fields, _, token = msg.params[1][1:].partition(",")
        chat = self.ctx.chat

        def row(name: str, chan: str, op: bool) -> IrcMessage:
            flags = ("G" if key(name) in self.door.away else "H") + ("@" if op else "")
            user, real = self._ident(name)
            if not fields:
                return self._num(
                    irc.RPL_WHOREPLY, chan, user, self.server, self.server, name, flags, f"0 {real}"
                )
            values = {
                "t": token, "c": chan, "u": user, "i": "255.255.255.255", "h": self.server,
                "s": self.server, "n": name, "f": flags, "d": "0", "l": "0",
                "a": self._registered(name) or "0", "o": "0", "r": real,
            }  # fmt: skip
            return self._num(
                irc.RPL_WHOSPCRPL, *(values[f] for f in "tcuihsnfdlaor" if f in fields)
            )

        def make() -> list[IrcMessage]:
            out: list[IrcMessage] = []
            if mask.startswith("#"):
                try:
                    chan, members = q.members(chat, self._account(), mask)
                except Refused:
                    members, chan = [], mask
                out = [row(m.name, chan, m.op) for m in members if m.sessions]
            else:
                pattern = key(mask)
                for acct in sorted(chat.online.values(), key=lambda a: a.key):
                    user, real = self._ident(acct.name)
                    seen = (acct.key, key(user), key(real), key(self.server))
                    if any(fnmatch.fnmatchcase(x, pattern) for x in seen):
                        out.append(row(acct.name, "*", False))
            out.append(self._num(irc.RPL_ENDOFWHO, mask, "End of WHO list"))
            return out

        self._query(make, label)

    def cmd_whois(self, msg: IrcMessage, label: str | None) -> None:
        if not msg.params:
            self._answer([self._num(irc.ERR_NONICKNAMEGIVEN, "No nickname given")], label)
            return
        nick = msg.params[-1]
        chat = self.ctx.chat

        def make() -> list[IrcMessage]:
            acct = chat.online.get(key(nick))
            if acct is None:
                return [
                    self._num(irc.ERR_NOSUCHNICK, nick, "No such nick"),
                    self._num(irc.RPL_ENDOFWHOIS, nick, "End of /WHOIS list"),
                ]
            name = acct.name
            out = [
                self._num(
                    irc.RPL_WHOISUSER,
                    name,
                    *self._ident(name)[:1],
                    self.server,
                    "*",
                    self._ident(name)[1],
                ),
                self._num(irc.RPL_WHOISSERVER, name, self.server, f"chatd {__version__}"),
            ]
            if self._registered(name):
                out.append(self._num(irc.RPL_WHOISACCOUNT, name, name, "is logged in as"))
            away = self.door.away.get(acct.key)
            if away is not None:
                out.insert(1, self._num(irc.RPL_AWAY, name, away))
            out.append(self._num(irc.RPL_ENDOFWHOIS, name, "End of /WHOIS list"))
            return out

        self._query(make, label)

    def cmd_list(self, msg: IrcMessage, label: str | None) -> None:
        def make() -> list[IrcMessage]:
            out = [self._num(irc.RPL_LISTSTART, "Channel", "Users  Name")]
            rows = q.channels(self.ctx.chat, self._account())
            if msg.params and msg.params[0].startswith("#"):  # LIST #a,#b: those only
                wanted = {c.lower() for c in msg.params[0].split(",")}
                rows = [row for row in rows if row[0] in wanted]
            for chan, n, owner in rows:
                topic = f"room of {owner}" if owner else "everyone"
                out.append(self._num(irc.RPL_LIST, chan, str(n), topic))
            out.append(self._num(irc.RPL_LISTEND, "End of /LIST"))
            return out

        self._query(make, label)

    def cmd_invite(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 2, label):
            return
        nick, chan = msg.params[0], msg.params[1]
        chat = self.ctx.chat
        member = [False]  # whether the invitee was in the room before (IRC: 443)

        def check() -> Outcome:
            room, target = chat.rooms.get(chan.lower()), chat.accounts.get(key(nick))
            member[0] = room is not None and target is not None and target.key in room.members
            return Outcome()

        def reply(event: Event) -> Event | None:
            if isinstance(event, Ok):
                # the inviter's session is the one the core tells nothing: show the join
                room = str(event.fields.get("room", chan))
                user = str(event.fields.get("user", nick))
                if member[0]:  # the core's "changes nothing", as IRC says it
                    text = "is already on channel"
                    return Rendered(
                        self._bytes([self._num(irc.ERR_USERONCHANNEL, user, room, text)], label)
                    )
                lines = [self._num(irc.RPL_INVITING, user, room)]
                if event.fields.get("status") != "invited":  # not an offer: in the room now
                    lines.append(IrcMessage("JOIN", (room,), self._user_mask(user)))
                return Rendered(self._bytes(lines, label))
            if isinstance(event, Error):
                return Rendered(self._bytes([self._room_refusal(event, chan, nick, True)], label))
            return None

        self._feed_query(check, "invite")
        self._submit(c.Room("invite", chan, nick, verb="room"), reply)

    def _room_refusal(self, err: Error, chan: str, nick: str, invite: bool) -> IrcMessage:
        """The numeric IRC gives for a refused INVITE or KICK: whichever of its checks
        fails first (no such nick or channel, not on it, target (not) on it), else the
        core's refusal as its numeric (482 for not the owner). Only the reply is
        chosen here; the refusal is the core's."""
        chat = self.ctx.chat
        room = chat.rooms.get(chan.lower())
        target = chat.accounts.get(key(nick))
        me = self._account().key
        if room is None:
            return self._num(irc.ERR_NOSUCHCHANNEL, chan, "No such channel")
        if me not in room.members:
            return self._num(irc.ERR_NOTONCHANNEL, room.key, "You're not on that channel")
        if target is None:
            return self._num(irc.ERR_NOSUCHNICK, nick, "No such nick")
        if invite and target.key in room.members:
            text = "is already on channel"
            return self._num(irc.ERR_USERONCHANNEL, target.name, room.key, text)
        if not invite and target.key not in room.members:
            text = "They aren't on that channel"
            return self._num(irc.ERR_USERNOTINCHANNEL, target.name, room.key, text)
        return self._error(err, nick if err.code == Code.NO_SUCH_USER else chan)

    def cmd_kick(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 2, label):
            return
        chan, nick = msg.params[0], msg.params[1]
        reason = msg.params[2] if len(msg.params) > 2 else nick

        def reply(event: Event) -> Event | None:
            if isinstance(event, Ok):
                line = IrcMessage(
                    "KICK",
                    (str(event.fields.get("room", chan)), nick, reason),
                    self._user_mask(self.nick),
                )
                return Rendered(self._bytes([line], label))
            if isinstance(event, Error):
                return Rendered(self._bytes([self._room_refusal(event, chan, nick, False)], label))
            return None

        self._submit(c.Room("kick", chan, nick, verb="room"), reply)

    # After registration: other ----------------------------------------------------

    def cmd_away(self, msg: IrcMessage, label: str | None) -> None:
        text = msg.params[0] if msg.params and msg.params[0] else None
        me = self._account().key
        if text is None:
            self.door.away.pop(me, None)
        else:
            self.door.away[me] = text
        if text:
            self._answer([self._num(irc.RPL_NOWAWAY, "You have been marked as being away")], label)
        else:
            self._answer(
                [self._num(irc.RPL_UNAWAY, "You are no longer marked as being away")], label
            )

    def cmd_ison(self, msg: IrcMessage, label: str | None) -> None:
        words = " ".join(msg.params).split()

        def make() -> list[IrcMessage]:
            online = [
                self.ctx.chat.online[key(w)].name for w in words if key(w) in self.ctx.chat.online
            ]
            return [self._num("303", " ".join(online))]

        self._query(make, label)

    def cmd_lusers(self, msg: IrcMessage, label: str | None) -> None:
        self._query(self._lusers, label)

    def cmd_whowas(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 1, label):
            return
        try:
            count = int(msg.params[1]) if len(msg.params) > 1 else 0
        except ValueError:
            count = 0
        out: list[IrcMessage] = []
        for nick in msg.params[0].split(","):
            if "*" in nick or "?" in nick:
                pattern = key(nick)
                found = [e for k, es in self.door.whowas.items() if fnmatch.fnmatchcase(k, pattern)
                         for e in es]  # fmt: skip
            else:
                found = list(self.door.whowas.get(key(nick), ()))
            found.reverse()  # the most recent first
            if count > 0:
                found = found[:count]
            for name, user, real in found:
                out.append(self._num(irc.RPL_WHOWASUSER, name, user, self.server, "*", real))
                out.append(self._num(irc.RPL_WHOISSERVER, name, self.server, "chatd"))
            if not found:
                out.append(self._num(irc.ERR_WASNOSUCHNICK, nick, "There was no such nickname"))
            out.append(self._num(irc.RPL_ENDOFWHOWAS, nick, "End of WHOWAS"))
        self._answer(out, label)

    def cmd_time(self, msg: IrcMessage, label: str | None) -> None:
        now = datetime.fromtimestamp(self.ctx.clock(), UTC)
        self._answer([self._num("391", self.server, f"{now:%A %B %d %Y -- %H:%M:%S} UTC")], label)

    def cmd_motd(self, msg: IrcMessage, label: str | None) -> None:
        self._answer(self._motd(), label)

    def cmd_version(self, msg: IrcMessage, label: str | None) -> None:
        self._answer(
            [self._num("351", f"chatd-{__version__}", self.server, "IRC door of chatd")], label
        )

    def cmd_oper(self, msg: IrcMessage, label: str | None) -> None:
        text = "chatd admins are named in chatd.toml; use /msg chatd for admin commands"
        self._answer([self._num("491", text)], label)

    def cmd_userhost(self, msg: IrcMessage, label: str | None) -> None:
        def make() -> list[IrcMessage]:
            online = self.ctx.chat.online
            found = [online[key(n)].name for n in msg.params[:5] if key(n) in online]
            away = self.door.away
            words = [f"{n}={'-' if key(n) in away else '+'}{n}@{self.server}" for n in found]
            return [self._num("302", " ".join(words))]

        self._query(make, label)

    def cmd_chathistory(self, msg: IrcMessage, label: str | None) -> None:
        if not self._need(msg, 3, label):
            return
        sub = msg.params[0].upper()
        limit_max = self.ctx.config.chat.history_max

        def fail(code: str, text: str) -> list[IrcMessage]:
            return [self._fail("CHATHISTORY", code, text)]

        def make() -> list[IrcMessage] | tuple[str, list[int]]:
            """The answer, or the target and the ids of the messages to read for it."""
            chat, acct = self.ctx.chat, self._account()
            p = msg.params
            try:
                limit = min(int(p[-1]), limit_max)
            except ValueError:
                return fail("INVALID_PARAMS", "the limit must be a number")
            if sub == "TARGETS":
                a, b = _parse_ref(p[1]), _parse_ref(p[2]) if len(p) > 3 else None
                if a is None or b is None or a.ts is None or b.ts is None:
                    return fail("INVALID_PARAMS", "TARGETS needs two timestamps")
                ref = f"T{next(self.batches)}"
                out = [IrcMessage("BATCH", (f"+{ref}", "draft/chathistory-targets"), self.server)]
                for target, ts in q.targets(chat, acct, a.ts, b.ts, limit):
                    tags = {"batch": ref}
                    out.append(
                        IrcMessage(
                            "CHATHISTORY",
                            ("TARGETS", target, rfc3339(ts)),
                            self.server,
                            tags,
                        )
                    )
                out.append(IrcMessage("BATCH", (f"-{ref}",), self.server))
                return out
            target = p[1]
            try:
                ck = q.chat_key(chat, acct, target)
            except Refused:
                return [
                    self._fail_params(
                        "CHATHISTORY", "INVALID_TARGET", sub, target, "not a chat you can read"
                    )
                ]
            refs = [_parse_ref(w) for w in p[2:-1]]
            if not refs or any(r is None for r in refs):
                return fail("INVALID_PARAMS", "a reference is msgid=<id>, timestamp=<time> or *")
            r0 = cast(q.Ref, refs[0])
            if sub == "BEFORE":
                ids = q.before(chat, ck, r0, limit)
            elif sub == "AFTER":
                ids = q.after(chat, ck, r0, limit)
            elif sub == "LATEST":
                ids = q.latest(chat, ck, r0, limit)
            elif sub == "AROUND":
                ids = q.around(chat, ck, r0, limit)
            elif sub == "BETWEEN" and len(refs) == 2:
                ids = q.between(chat, ck, r0, cast(q.Ref, refs[1]), limit)
            else:
                return fail("INVALID_PARAMS", f"unknown subcommand {sub}")
            return target, ids

        def run() -> Outcome:
            """In order with earlier commands; the bodies come from the recent window
            or the store (off the loop), like a `history`'s."""
            answer = make()
            if isinstance(answer, list):
                return Outcome(replies=[Rendered(self._bytes(answer, label))])
            target, ids = answer
            viewer = self._account().key

            def then(msgs: list[Message]) -> Outcome:
                pushes = [Push(m, viewer, True) for m in msgs]
                return Outcome(
                    replies=[Rendered(self._bytes(self._history_batch(target, pushes), label))]
                )

            return self.ctx.chat.with_bodies(ids, then)

        self._feed_query(run, "chathistory")

    def _history_batch(self, target: str, pushes: list[Push]) -> list[IrcMessage]:
        """A `chathistory` batch; with a batch ref the renderer's bytes are reparsed,
        which costs nothing next to a page of history and keeps one renderer."""
        ref = f"H{next(self.batches)}"
        mode = self._mode()
        use_batch = "batch" in self.caps
        out: list[IrcMessage] = []
        if use_batch:
            out.append(IrcMessage("BATCH", (f"+{ref}", "chathistory", target), self.server))
        r = self.door.renderer
        for p in pushes:
            prefix = "" if mode is not Mode.IRC else f"[{r.clock(p.message.ts)}] "
            data = r.irc.push(p, mode, prefix=prefix, batch=ref if use_batch else None)
            out += [irc.parse(line) for line in data.decode().split("\r\n") if line]
        if use_batch:
            out.append(IrcMessage("BATCH", (f"-{ref}",), self.server))
        return out

    def cmd_markread(self, msg: IrcMessage, label: str | None) -> None:
        if not msg.params:
            self._answer([self._fail("MARKREAD", "NEED_MORE_PARAMS", "MARKREAD <target>")], label)
            return
        target = msg.params[0]
        ts: float | None = None
        if len(msg.params) > 1:
            ref = _parse_ref(msg.params[1])
            if ref is None or ref.ts is None:
                text = "timestamp=<time> expected"
                fail = self._fail_params("MARKREAD", "INVALID_PARAMS", target, text)
                self._answer([fail], label)
                return
            ts = ref.ts

        def run() -> Outcome:
            acct = self._account()
            try:
                ck = q.chat_key(self.ctx.chat, acct, target)
            except Refused:  # a chat you cannot read has no marker for you
                return Outcome(
                    replies=[Rendered(self._bytes([self._markread(target, None)], label))]
                )
            before = self._marker(ck)
            if ts is not None:  # the marker only ever moves forward
                marks = self.door.markers.setdefault(acct.key, {})
                marks[ck] = max(ts, marks.get(ck, ts))
            now = self._marker(ck)
            line = self._markread(target, now)
            out = Outcome(replies=[Rendered(self._bytes([line], label))])
            if now != before:  # the account's other IRC clients with read-marker learn it
                others = [
                    conn.peer
                    for conn in self.door.connections
                    if conn is not self
                    and conn.registered
                    and conn.peer is not None
                    and conn.peer.account is acct
                    and "draft/read-marker" in conn.caps
                ]
                if others:
                    out.pushes.append((Rendered(line.render()), others))
            return out

        self._feed_query(run, "markread")


_Handler = Callable[[IrcConnection, IrcMessage, "str | None"], None]

_PRE: dict[str, _Handler] = {
    "CAP": IrcConnection.cmd_cap,
    "PASS": IrcConnection.cmd_pass,
    "NICK": IrcConnection.cmd_nick,
    "USER": IrcConnection.cmd_user,
    "AUTHENTICATE": IrcConnection.cmd_authenticate,
    "PING": IrcConnection.cmd_ping,
    "PONG": IrcConnection.cmd_pong,
    "QUIT": IrcConnection.cmd_quit,
}

_POST: dict[str, _Handler] = {
    "PRIVMSG": IrcConnection.cmd_privmsg,
    "NOTICE": IrcConnection.cmd_notice,
    "TAGMSG": IrcConnection.cmd_tagmsg,
    "JOIN": IrcConnection.cmd_join,
    "PART": IrcConnection.cmd_part,
    "NAMES": IrcConnection.cmd_names,
    "TOPIC": IrcConnection.cmd_topic,
    "MODE": IrcConnection.cmd_mode,
    "WHO": IrcConnection.cmd_who,
    "WHOIS": IrcConnection.cmd_whois,
    "LIST": IrcConnection.cmd_list,
    "INVITE": IrcConnection.cmd_invite,
    "KICK": IrcConnection.cmd_kick,
    "AWAY": IrcConnection.cmd_away,
    "ISON": IrcConnection.cmd_ison,
    "MOTD": IrcConnection.cmd_motd,
    "LUSERS": IrcConnection.cmd_lusers,
    "TIME": IrcConnection.cmd_time,
    "WHOWAS": IrcConnection.cmd_whowas,
    "VERSION": IrcConnection.cmd_version,
    "OPER": IrcConnection.cmd_oper,
    "USERHOST": IrcConnection.cmd_userhost,
    "CHATHISTORY": IrcConnection.cmd_chathistory,
    "MARKREAD": IrcConnection.cmd_markread,
}
