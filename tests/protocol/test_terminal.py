"""Nothing a terminal would act on reaches a text-mode reader."""

from __future__ import annotations

import unicodedata

from chatd.protocol.events import FileInfo, Message, Mode, Push
from chatd.protocol.notices import AnyNotice
from chatd.protocol.render import Renderer
from chatd.protocol.terminal import inert

HOSTILE = (
    "a\x1b[31mb"  # ESC (C0)
    "\x9b2Jc"  # CSI as a C1 control
    "\x7fd"  # DEL
    "\u202egnp.exe\u202c"  # RIGHT-TO-LEFT OVERRIDE ... POP
    "\u2066e\u2069"  # an isolate
    "f\u200bg\u200d"  # zero-width space and joiner
    "h\u2028i\u2029j\nk"  # line and paragraph separators, LF
)


def test_inert_drops_controls_and_invisible_formatting() -> None:
    out = inert(HOSTILE)
    assert out == "a[31mb2Jcdgnp.exeefgh i j k"
    assert all(unicodedata.category(ch)[0] != "C" for ch in out)


def test_printable_text_and_tabs_pass_untouched() -> None:
    for text in ("hello", "у меня всё хорошо 🎉", "a\tb", "日本語", "עברית"):
        assert inert(text) == text


def test_text_mode_lines_are_inert_and_json_carries_text_as_sent() -> None:
    r = Renderer()
    m = Message(7, "#general", "eve", HOSTILE, 1_800_000_000.0)
    line = r.render(Push(m), Mode.TEXT).decode()
    assert line.endswith("<eve> a[31mb2Jcdgnp.exeefgh i j k\n") and line.count("\n") == 1
    assert '"text":"a\\u001b[31mb\x9b2Jc\x7fd\u202egnp.exe' in r.render(Push(m), Mode.JSON).decode()
    named = Message(8, "#general", "eve", "x", 1.0, file=FileInfo(1, "a\u202eb.txt", 3, "0" * 64))
    assert "[file 1 ab.txt 3 bytes]" in r.render(Push(named), Mode.TEXT).decode()
    notice = AnyNotice("announce", {"from": "root", "text": "x\x1b]0;pwned\x07y"})
    assert r.render(notice, Mode.TEXT) == b"* announcement from root: x]0;pwnedy\n"
