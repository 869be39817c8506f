"""The renderer's fast paths (issue 17) give the bytes of the general path: the OK of a
sent message without building its fields, and private message lines in one f-string."""

from __future__ import annotations

from datetime import UTC

import pytest

from chatd.protocol import replies
from chatd.protocol.events import FileInfo, Message, Mode, Push
from chatd.protocol.render import Renderer

TS = 1764460800.25  # 2025-11-30T00:00:00.250Z


@pytest.fixture
def r() -> Renderer:
    return Renderer(UTC)


@pytest.mark.parametrize("kind", [replies.SentOk, replies.SendAllOk])
@pytest.mark.parametrize("verb", ["send", "send_all", "SEND"])
def test_the_ok_of_a_sent_message_is_the_layouts_line(
    r: Renderer, kind: type[replies.SentOk], verb: str
) -> None:
    ok = kind(verb, 4242, TS)
    assert r.render(ok, Mode.TEXT) == b"OK sent [4242]\n"
    assert r.render(ok, Mode.TEXT) == r.text(ok)  # the general path, as other modes take
    assert r.render(ok, Mode.JSON) == (
        f'{{"type":"ok","cmd":"{verb}","id":4242,"ts":"2025-11-30T00:00:00.250Z"}}\n'.encode()
    )


def test_private_lines_name_the_other_party_for_each_side(r: Renderer) -> None:
    m = Message(7, "@alice:bob", "Alice", "hi there", TS, None, "Bob", None)
    assert r.render(Push(m, "alice"), Mode.TEXT) == b"00:00:00 [7] @Bob <Alice> hi there\n"
    assert r.render(Push(m, "bob"), Mode.TEXT) == b"00:00:00 [7] @Alice <Alice> hi there\n"
    assert r.render(Push(m, None), Mode.TEXT) == b"00:00:00 [7] @Alice <Alice> hi there\n"


@pytest.mark.parametrize(
    "message",
    [
        Message(1, "#general", "zed", "plain", TS),
        Message(2, "#general", "zed", "reply", TS, reply_to=1),
        Message(3, "@a:zed", "zed", "private reply", TS, reply_to=1, to="a"),
        Message(4, "#general", "zed", "", TS),
        Message(5, "@a:zed", "zed", "bell\x07 and\nbreak", TS, to="a"),
        Message(6, "#r", "zed", "f.txt", TS, file=FileInfo(9, "f.txt", 12, "ab" * 32)),
    ],
)
def test_every_message_line_is_the_parts_joined(r: Renderer, message: Message) -> None:
    push = Push(message, "a")
    m = message
    chat = m.chat if m.to is None else ("@" + m.to if m.sender.lower() == "a" else "@" + m.sender)
    parts = ["00:00:00", f"[{m.id}]", chat, f"<{m.sender}>"]
    if m.reply_to is not None:
        parts.append(f"(re [{m.reply_to}])")
    if m.file is not None:
        parts.append(f"[file {m.file.id} {m.file.name} {m.file.size} bytes]")
    text = m.text.replace("\x07", "").replace("\n", " ")
    if text and (m.file is None or m.text != m.file.name):
        parts.append(text)
    assert r.render(push, Mode.TEXT) == (" ".join(parts) + "\n").encode()
