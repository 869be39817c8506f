"""A strict parser for the Prometheus text exposition format 0.0.4, for tests that scrape."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? (\S+)\Z")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|\Z)')
_HELP = re.compile(rf"# HELP ({_NAME}) ((?:[^\\\n]|\\[\\n])*)\Z")
_TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)\Z")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Exposition:
    types: dict[str, str]
    helps: dict[str, str]
    samples: dict[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _parse_labels(text: str) -> Labels:
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _PAIR.match(text, pos)
        assert m is not None, f"bad labels at {text[pos:]!r}"
        pairs.append((m.group(1), _unescape(m.group(2))))
        pos = m.end()
    names = [n for n, _ in pairs]
    assert len(set(names)) == len(names), f"duplicate label in {text!r}"
    return tuple(sorted(pairs))


def _parse_value(text: str) -> float:
    assert re.fullmatch(r"[+-]Inf|NaN|[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text), text
    return float(text)


def parse(text: str) -> Exposition:
    """Every line is HELP, TYPE or `name{labels} value`; samples follow their TYPE."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: dict[tuple[str, Labels], float] = {}
    current: str | None = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            m = _HELP.match(line)
            assert m is not None, line
            assert m.group(1) not in helps, f"second HELP for {m.group(1)}"
            helps[m.group(1)] = _unescape(m.group(2))
            continue
        if line.startswith("# TYPE "):
            m = _TYPE.match(line)
            assert m is not None, line
            assert m.group(1) not in types, f"second TYPE for {m.group(1)}"
            types[m.group(1)] = m.group(2)
            current = m.group(1)
            continue
        assert not line.startswith("#"), line
        m = _SAMPLE.match(line)
        assert m is not None, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), _parse_labels(m.group(2) or ""), m.group(3)
        assert current is not None, f"{name} before any TYPE"
        family_type = types[current]
        allowed = {current}
        if family_type == "histogram":
            allowed = {current + s for s in ("_bucket", "_sum", "_count")}
            if name == current + "_bucket":
                assert "le" in dict(labels), line
        assert name in allowed, f"{name} outside its family {current}"
        key = (name, labels)
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = _parse_value(value)
    return Exposition(types, helps, samples)
