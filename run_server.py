#!/usr/bin/env python3
"""Starts the chatd daemon: the same as `python -m chatd` and the `chatd` script."""

import sys

from chatd.cli import main

if __name__ == "__main__":
    sys.exit(main())
