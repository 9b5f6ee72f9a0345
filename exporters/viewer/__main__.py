import sys

from exporters.viewer.cli import main

sys.exit(main())
