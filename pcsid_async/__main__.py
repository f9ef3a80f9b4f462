"""``python -m pcsid_async``: the ``pcsid-async`` command-line tool."""

import sys

from pcsid_async._cli import main

if __name__ == "__main__":
    sys.exit(main())
