"""IRC messages, sans I/O: bytes to `IrcMessage` values and back, and chatd's events as
IRC lines.

`IrcFramer.feed(data)` takes whatever the socket produced and returns complete lines
(or an `IrcFrameError` where a line was too long); `parse(line)` splits one line into
tags, source, command and parameters (IRCv3 message-tags escaping included);
`IrcMessage.render()` is the inverse. `IrcRenderer` turns the core's Push and Notice
values into IRC lines once per IRC render mode, so the hub's fan-out writes the same
bytes to every IRC session of a mode (see `chatd.protocol.render.Renderer.render`).

Limits follow the IRCv3 message-tags spec: 512 bytes for the message itself (CR LF
included) plus up to 8191 bytes of tags (the `@` and the space included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from chatd.protocol.events import MAX_CLIENT_TAGS, Event, Message, Mode, Notice, Push
from chatd.protocol.relay import Relayed
from chatd.protocol.timefmt import rfc3339

MAX_BODY = 512  # the message without tags, CR LF included (RFC 1459)
MAX_TAGS = 8191  # the tags, `@` and trailing space included (IRCv3 message-tags)
MAX_LINE = MAX_BODY + MAX_TAGS


def client_tags_too_long(line: str) -> bool:
    """Whether a client's line has more tag data than IRCv3 lets a client send (the
    server answers 417 and drops the line)."""
    if not line.startswith("@") or len(line) <= MAX_CLIENT_TAGS:
        return False
    return len(line[1:].partition(" ")[0].encode()) > MAX_CLIENT_TAGS


IRC_MODES = frozenset({Mode.IRC, Mode.IRC_TIME, Mode.IRC_TAGS})

# Numerics chatd sends, by name (RFC 1459/2812 and the IRCv3 extensions).
RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_AWAY = "301"
RPL_UNAWAY = "305"
RPL_NOWAWAY = "306"
RPL_WHOISUSER = "311"
RPL_WHOWASUSER = "314"
RPL_WHOISSERVER = "312"
RPL_ENDOFWHO = "315"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_LISTSTART = "321"
RPL_LIST = "322"
RPL_LISTEND = "323"
RPL_CHANNELMODEIS = "324"
RPL_CREATIONTIME = "329"
RPL_WHOISACCOUNT = "330"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_INVITING = "341"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_WHOSPCRPL = "354"
RPL_ENDOFNAMES = "366"
RPL_ENDOFWHOWAS = "369"
RPL_BANLIST = "367"
RPL_ENDOFBANLIST = "368"
RPL_MOTD = "372"
RPL_MOTDSTART = "375"
RPL_ENDOFMOTD = "376"
RPL_YOUREOPER = "381"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHCHANNEL = "403"
ERR_WASNOSUCHNICK = "406"
ERR_CANNOTSENDTOCHAN = "404"
ERR_TOOMANYCHANNELS = "405"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_INPUTTOOLONG = "417"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOMOTD = "422"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_NICKNAMEINUSE = "433"
ERR_USERNOTINCHANNEL = "441"
ERR_NOTONCHANNEL = "442"
ERR_USERONCHANNEL = "443"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTERED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_YOUREBANNEDCREEP = "465"
ERR_UNKNOWNMODE = "472"
ERR_INVITEONLYCHAN = "473"
ERR_BANNEDFROMCHAN = "474"
ERR_BADCHANNELKEY = "475"
ERR_NOPRIVILEGES = "481"
ERR_CHANOPRIVSNEEDED = "482"
ERR_UMODEUNKNOWNFLAG = "501"
ERR_USERSDONTMATCH = "502"
RPL_LOGGEDIN = "900"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"


class IrcParseError(ValueError):
    """A line that is not an IRC message (empty, or tags/source without a command)."""


@dataclass(frozen=True, slots=True)
class IrcFrameError:
    """A line over the length limit; its bytes up to the next LF were discarded."""

    message: str


@dataclass(frozen=True, slots=True)
class IrcMessage:
    """One IRC message. `command` is upper-cased by `parse` (numerics stay digits);
    `tags` maps names (client-only tags keep their `+`) to unescaped values ("" when
    the tag had no value)."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> bytes:
        """The message as one CR LF terminated line, the last parameter as trailing
        when it needs to be (empty, has a space, or starts with a colon)."""
        return render(self.command, self.params, self.source, self.tags)


# Tag escaping (IRCv3 message-tags) ------------------------------------------------------

_ESCAPE = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE_TABLE = str.maketrans(_ESCAPE)


def escape_tag(value: str) -> str:
    return value.translate(_ESCAPE_TABLE)


def unescape_tag(value: str) -> str:
    """The inverse of `escape_tag`; an unknown escape drops the backslash and a
    trailing lone backslash is dropped, as the spec says."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "\\":
            if i + 1 < n:
                nxt = value[i + 1]
                out.append(_UNESCAPE.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def render_tags(tags: Mapping[str, str]) -> str:
    """`@a=b;c ` for a non-empty mapping, "" for an empty one."""
    if not tags:
        return ""
    parts = [f"{k}={escape_tag(v)}" if v else k for k, v in tags.items()]
    return "@" + ";".join(parts) + " "


#: The client-only tag that makes a PRIVMSG a comment (chatd keeps it as `reply_to`).
REPLY_TAG = "+draft/reply"


def client_tags(tags: Mapping[str, str]) -> str:
    """A message's client-only tags as `Message.tags` keeps them: the `+` tags but
    `+draft/reply` (a comment's `reply_to`), in message-tags form (`+a=b;+c`), "" when
    there are none."""
    parts = [
        f"{k}={escape_tag(v)}" if v else k
        for k, v in tags.items()
        if k.startswith("+") and k != REPLY_TAG
    ]
    return ";".join(parts)


def parse_client_tags(raw: str) -> dict[str, str]:
    """`Message.tags` back to names and unescaped values (the inverse of client_tags)."""
    out: dict[str, str] = {}
    for item in raw.split(";"):
        name, _, value = item.partition("=")
        if name:
            out[name] = unescape_tag(value)
    return out


# Parsing and rendering -------------------------------------------------------------------


def parse(line: str) -> IrcMessage:
    """One line (without CR LF) to an IrcMessage; raises IrcParseError if there is no
    command. Runs of spaces between parameters count as one, as clients send them."""
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        for item in raw.split(";"):
            if not item:
                continue
            name, _, value = item.partition("=")
            if name:
                tags[name] = unescape_tag(value)
        rest = rest.lstrip(" ")
    source: str | None = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing: str | None = None
    head, sep, tail = rest.partition(" :")
    if sep:
        trailing = tail
        rest = head
    elif rest.startswith(":"):
        trailing, rest = rest[1:], ""
    words = [w for w in rest.split(" ") if w]
    if not words:
        raise IrcParseError("no command")
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return IrcMessage(words[0].upper(), tuple(params), source, tags)


def render(
    command: str,
    params: tuple[str, ...] | list[str] = (),
    source: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of one message (see IrcMessage.render)."""
    parts = [f":{source} {command}" if source else command]
    if params:
        for p in params[:-1]:
            parts.append(p)
        last = params[-1]
        if not last or " " in last or last.startswith(":"):
            parts.append(":" + last)
        else:
            parts.append(last)
    text = " ".join(parts)
    if tags:
        text = render_tags(tags) + text
    return (text + "\r\n").encode()


class IrcFramer:
    """Bytes to decoded lines: LF ends a line (a CR before it is dropped), a line over
    MAX_LINE becomes an IrcFrameError and is skipped up to its LF. Invalid UTF-8 is
    read as Latin-1, which is what old IRC clients send; NUL bytes are removed."""

    __slots__ = ("_buf", "_skipping", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._skipping = False
        self.max_line = max_line

    def feed(self, data: bytes) -> list[str | IrcFrameError]:
        out: list[str | IrcFrameError] = []
        buf = self._buf
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            raw = bytes(buf[start:nl])
            start = nl + 1
            if self._skipping:
                self._skipping = False
                continue
            if len(raw) > self.max_line:
                out.append(IrcFrameError("Input line was too long"))
                continue
            line = _decode(raw)
            if line.strip(" "):
                out.append(line)
        del buf[:start]
        if len(buf) > self.max_line and not self._skipping:
            out.append(IrcFrameError("Input line was too long"))
            self._skipping = True
        if self._skipping:
            buf.clear()
        return out


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if b"\0" in raw or b"\r" in raw:
        raw = raw.replace(b"\0", b"").replace(b"\r", b"")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def irc_time(ts: float) -> str:
    """The `time` tag's value: RFC 3339 UTC with milliseconds (IRCv3 server-time);
    timefmt caches the formatting, which costs more than the rest of a line."""
    return rfc3339(ts)


def hostmask(name: str, host: str) -> str:
    """The source of a user's lines: nick!user@host, with the account as nick and user."""
    return f"{name}!{name}@{host}"


def split_text(text: str, room: int) -> list[str]:
    """`text` in pieces of at most `room` UTF-8 bytes, cut between characters (and at a
    space when there is one in the piece's last quarter)."""
    data = text.encode()
    if len(data) <= room:
        return [text]
    pieces: list[str] = []
    while len(data) > room:
        cut = room
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # not inside a character
            cut -= 1
        space = data.rfind(b" ", (room * 3) // 4, cut)
        if space > 0:
            cut = space
        pieces.append(data[:cut].decode())
        data = data[cut:].lstrip(b" ") if space > 0 else data[cut:]
    if data:
        pieces.append(data.decode())
    return pieces


def keep_tags(data: bytes, allowed: frozenset[bytes]) -> bytes:
    """`data` (CR LF terminated lines) with only the `allowed` tags on each line: for
    a client whose caps allow fewer tags than the render mode it shares (`account-tag`
    without `message-tags` may get `account`, not `msgid`). Such a client has no
    `message-tags`, so a TAGMSG line is dropped whole (IRCv3: never sent to it)."""
    lines = data.split(b"\r\n")
    out: list[bytes] = []
    for line in lines:
        if line.startswith(b"@"):
            raw, _, rest = line[1:].partition(b" ")
            if rest.split(b" ", 2)[1:2] == [b"TAGMSG"]:
                continue
            kept = [t for t in raw.split(b";") if t.partition(b"=")[0] in allowed]
            out.append(b"@" + b";".join(kept) + b" " + rest if kept else rest)
        else:
            out.append(line)
    return b"\r\n".join(out)


# NUL stands for the recipient's nick in rendered bytes: the IRC door's transport puts
# the nick in (a notice is rendered once for all of a user's sessions).
ME = "\0"
ME_BYTES = b"\0"


@dataclass(frozen=True, slots=True)
class IrcRenderer:
    """Push and Notice as IRC lines; one instance per server (its name and the base of
    file links). `file_url` is e.g. `http://127.0.0.1:8080/files/` or "" (no link)."""

    server: str = "chatd"
    host: str = "chatd"
    file_url: str = ""

    def render(self, event: Event, mode: Mode) -> bytes:
        if isinstance(event, Push):
            return self.push(event, mode)
        if isinstance(event, Notice):
            return self.notice(event, mode)
        if isinstance(event, Relayed):
            if mode is not Mode.IRC_TAGS:  # the core sends none: never without the tags
                return b""
            return self.tagmsg(
                event.sender, event.target, event.tags, irc_time(event.ts), event.ref
            )
        return b""  # replies are rendered by the IRC door itself (Submit's reply)

    def tagmsg_message(
        self, sender: str, target: str, tags: tuple[tuple[str, str], ...], time: str, msgid: str
    ) -> IrcMessage:
        """A relay (client-only tags, chatd.protocol.relay) as a TAGMSG with every tag:
        the same for its recipients and the sender's echo."""
        all_tags = {"time": time, "msgid": msgid, "account": sender, **dict(tags)}
        return IrcMessage("TAGMSG", (target,), hostmask(sender, self.host), all_tags)

    def tagmsg(
        self, sender: str, target: str, tags: tuple[tuple[str, str], ...], time: str, msgid: str
    ) -> bytes:
        return self.tagmsg_message(sender, target, tags, time, msgid).render()

    def message_tags(self, m: Message, mode: Mode) -> dict[str, str]:
        if mode is Mode.IRC:
            return {}
        tags = {"time": irc_time(m.ts)}
        if mode is Mode.IRC_TAGS:
            tags["msgid"] = str(m.id)
            tags["account"] = m.sender
            if m.reply_to is not None:
                tags[REPLY_TAG] = str(m.reply_to)
            if m.tags:  # client-only tags, for message-tags clients only (IRCv3)
                tags.update(parse_client_tags(m.tags))
        return tags

    def target(self, m: Message) -> str:
        """The PRIVMSG target: the channel, or for a private message its recipient
        (right for the recipient and for the sender's other sessions alike)."""
        return m.to if m.to is not None else m.chat

    def text(self, m: Message) -> str:
        text = m.text
        if m.file is not None:
            f = m.file
            link = f" {self.file_url}{f.id}" if self.file_url else ""
            text = f"[file {f.id} {f.name} {f.size} bytes]{link}"
            if m.text and m.text != f.name:
                text += " " + m.text
        return text

    def push(self, push: Push, mode: Mode, prefix: str = "", batch: str | None = None) -> bytes:
        """PRIVMSG lines of one message (NOTICE for an IRC NOTICE's), split to fit 512
        bytes; `prefix` goes before the text (the `[HH:MM:SS]` of replay for clients
        without server-time), `batch` is the reference of the batch the lines belong to."""
        m = push.message
        source = hostmask(m.sender, self.host)
        target = self.target(m)
        tags = self.message_tags(m, mode)
        if batch is not None:
            tags["batch"] = batch
        text = prefix + self.text(m)
        command = "NOTICE" if m.kind else "PRIVMSG"  # NOTICE_KIND: the only other kind
        # Split what an IRC client could not have sent in one line (nc allows 4 KiB);
        # the source prefix may take a relayed line past 512 bytes, as elsewhere.
        # (`PRIVMSG nick word`: a client's longest text has no colon before it)
        room = MAX_BODY - len(f"{command} {target} \r\n".encode())
        if len(text) * 4 <= room:  # the common case: surely one line, rendered inline
            head = render_tags(tags) if tags else ""
            return f"{head}:{source} {command} {target} :{text}\r\n".encode()
        return b"".join(
            render(command, (target, piece), source, tags) for piece in split_text(text, room)
        )

    def notice(self, notice: Notice, mode: Mode) -> bytes:
        f = notice.fields
        event = notice.event
        tagged = mode is Mode.IRC_TAGS  # the `account` tag of the user it is from

        def by(name: str) -> tuple[str, dict[str, str] | None]:
            return hostmask(name, self.host), {"account": name} if tagged else None

        if event == "joined":
            return render("JOIN", (str(f["room"]),), *by(str(f["user"])))
        if event == "left":
            return render("PART", (str(f["room"]),), *by(str(f["user"])))
        if event == "invited":
            return render("INVITE", (ME, str(f["room"])), *by(str(f["by"]))) + render(
                "JOIN", (str(f["room"]),), *by(ME)
            )
        if event == "invitation":  # an offer (rooms.invite_consent): JOIN accepts it
            return render("INVITE", (ME, str(f["room"])), *by(str(f["by"])))
        if event == "removed":
            return render("KICK", (str(f["room"]), ME, "removed by the owner"), *by(str(f["by"])))
        from chatd.protocol.render import notice_text  # render imports this module

        return render("NOTICE", (ME, notice_text(notice)), self.server)
