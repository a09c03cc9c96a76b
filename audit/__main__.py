"""`python -m audit`."""

from __future__ import annotations

import os
import sys

from audit.cli import main

# Commands that import torch end without the interpreter's teardown, which takes most of
# a second once torch is imported; everything they write is closed by then.
QUICK_EXIT = ("run", "trace")

if __name__ == "__main__":
    code = main()
    if len(sys.argv) > 1 and sys.argv[1] in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
