"""``python -m pcsid_async``: the ``pcsid-async`` command-line tool."""

import sys

from pcsid_async.cli import main

if __name__ == "__main__":
    sys.exit(main())
