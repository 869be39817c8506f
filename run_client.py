#!/usr/bin/env python3
"""Starts the chatd terminal client: the same as the `chat` script."""

import sys

from chatd.client.main import main

if __name__ == "__main__":
    sys.exit(main())
