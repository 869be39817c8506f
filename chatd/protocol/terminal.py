"""Text a terminal would act on, made inert, for text-mode output only.

People read text mode in terminals, where a C0 or C1 control, DEL or an escape starts a
command, a bidi override or isolate (U+202A-U+202E, U+2066-U+2069) reorders what
follows, zero-width characters hide text and U+2028/U+2029 break lines. The line door
already drops C0 controls from what it reads, but other doors (HTTP, IRC) carry text
as sent, so everything a text-mode session receives passes through `inert`: controls
and invisible formatting go, a line break becomes a space. JSON mode carries text
exactly as sent: programs decide for themselves.
"""

from __future__ import annotations

#: Code points a terminal would act on: controls, bidi and invisible formatting.
UNSAFE = (
    *range(0x00, 0x09),
    *range(0x0B, 0x0D),
    *range(0x0E, 0x20),
    *range(0x7F, 0xA0),  # DEL and the C1 controls
    0x061C,  # ARABIC LETTER MARK
    *range(0x200B, 0x2010),  # zero-width space, joiners, LRM, RLM
    *range(0x202A, 0x202F),  # bidi embeddings and overrides
    *range(0x2060, 0x2070),  # word joiner, invisible operators, bidi isolates
    0xFEFF,  # zero-width no-break space
    *range(0xE0000, 0xE0080),  # tag characters
)
_TABLE: dict[int, str | None] = {c: None for c in UNSAFE}
_TABLE |= {0x0A: " ", 0x0D: " ", 0x2028: " ", 0x2029: " "}


def inert(text: str) -> str:
    """`text` without anything a terminal would act on (TAB stays). Printable text,
    nearly all of it, is returned as it is after one C-speed check."""
    if text.isprintable():
        return text
    return text.translate(_TABLE)
