"""``python -m exporters``: see ``exporters.convert``."""

import sys

from exporters.convert import main

sys.exit(main())
