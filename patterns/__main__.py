"""``python -m patterns``: see patterns/cli.py."""

import sys

from patterns.cli import main

sys.exit(main())
