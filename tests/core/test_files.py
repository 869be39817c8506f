"""File names as the core stores them: sanitised, never paths, bounded."""

from __future__ import annotations

from chatd.core.files import MAX_NAME_CHARS, safe_name

MiB = 1024 * 1024
SLOW = 60.0  # seconds allowed for a 5 MiB transfer on a loaded machine (not asserted)


def test_safe_name() -> None:
    assert safe_name("..\\..\\win\\boot.ini") == "boot.ini"
    assert safe_name("a\x00b\x1bc\u202ed.txt") == "abcd.txt"
    assert safe_name("..") == "file" and safe_name("dir/") == "file"
    long = safe_name("x" * 500 + ".jpeg")
    assert len(long) == MAX_NAME_CHARS and long.endswith(".jpeg")
    assert len(safe_name("y" * 500)) == MAX_NAME_CHARS
    assert safe_name("résumé.pdf") == "résumé.pdf"
