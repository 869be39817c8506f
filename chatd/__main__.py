"""`python -m chatd`: the same as the `chatd` console script and run_server.py."""

import sys

from chatd.cli import main

sys.exit(main())
