"""``python -m exporters``: see ``exporters.convert``; ``python -m exporters merge``:
see ``exporters.merge_cli``."""

import sys

if sys.argv[1:2] == ["merge"]:
    from exporters.merge_cli import main

    sys.exit(main(sys.argv[2:]))
from exporters.convert import main

sys.exit(main())
