"""``python -m mutask.operator [flags]``: the operator without the trainer CLI (no torch)."""

import sys

from mutask.operator.main import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
