"""Recording: the scope, the cores that hook the interpreter (C on the profile
API, pure Python, sys.monitoring), the interning registry and argument summaries,
and the ``Recorder`` session that runs a core and builds the Trace."""
