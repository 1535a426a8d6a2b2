"""``python -m lightly_simmim.cli``: the ``lightly-simmim`` command."""

import sys

from lightly_simmim.cli import main

if __name__ == "__main__":
    sys.exit(main())
