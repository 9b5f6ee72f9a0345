import os
import sys

from exporters.viewer.cli import main

code = main()
# The server's threads (the builder, one per connection) are daemons with nothing
# left to do: end now rather than in the interpreter's finalization, which has
# been seen, rarely and not understood yet, to hang after Ctrl-C.
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass
os._exit(code)
