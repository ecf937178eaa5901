"""``python -m xmc``: see :mod:`xmc.cli`."""
import sys

from xmc.cli import main

sys.exit(main())
