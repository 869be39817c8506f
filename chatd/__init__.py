"""chatd: a small, fast, durable line-protocol chat daemon."""

__version__ = "0.1.0"
