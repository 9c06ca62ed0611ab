"""``python -m optodfa``: the same command line as ``optodfa``."""

import sys

from optodfa.cli import main

sys.exit(main())
