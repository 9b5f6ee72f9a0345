"""``python -m otel_tracer`` is ``python -m cli.main``."""

import sys

from cli.main import main

sys.exit(main())
