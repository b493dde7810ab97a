"""``python -m lane``: see lane/cli.py."""

import sys

from lane.cli import main

sys.exit(main())
