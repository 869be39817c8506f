"""`help` in text mode: ASCII, two aligned columns, within an 80-column terminal."""

from __future__ import annotations

from chatd.protocol.commands import COMMANDS
from chatd.protocol.render import HELP_COLUMN, HELP_WIDTH, Renderer
from chatd.protocol.replies import AnyOk


def _help_text(names: list[str]) -> list[str]:
    rows = [{"name": n, "usage": COMMANDS[n].usage, "summary": COMMANDS[n].summary} for n in names]
    return Renderer().text(AnyOk("help", "help", {"commands": rows})).decode().splitlines()


def test_every_usage_and_summary_is_ascii() -> None:
    for spec in COMMANDS.values():
        assert spec.usage.isascii() and spec.summary.isascii(), spec.name


def test_help_is_ascii_aligned_and_fits_80_columns() -> None:
    lines = _help_text(list(COMMANDS))
    assert lines[-1] == f"OK {len(COMMANDS)} commands"
    items = lines[:-1]
    assert all(line.isascii() and len(line) <= HELP_WIDTH for line in items)
    assert all(line.startswith("  ") for line in items)
    column = 2 + HELP_COLUMN + 2  # where every summary starts
    for spec in COMMANDS.values():
        (row,) = [i for i, line in enumerate(items) if f"{line[2:]} ".startswith(spec.usage + " ")]
        if len(spec.usage) <= HELP_COLUMN:
            first = items[row]
        else:  # a long usage stands alone; its summary starts on the next line
            assert items[row] == "  " + spec.usage
            row += 1
            first = items[row]
        assert first[:column].strip() in ("", spec.usage)
        assert first[column - 1] == " " and first[column] != " ", first
        # The summary, continued on lines indented to the same column, says it all.
        text = [first[column:]]
        for line in items[row + 1 :]:
            if line[:column].strip():
                break
            text.append(line[column:])
        assert " ".join(text) == spec.summary


def test_one_command_is_one_line_when_it_fits() -> None:
    assert _help_text(["send"]) == [
        "  send <user|@user|#room> <text>    private message, or a message to a room",
        "OK 1 command",
    ]
