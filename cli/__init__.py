"""Command-line interface of the otel-tracer: ``python -m cli.main <script> [options]``."""

import otel_tracer  # noqa: F401 - first: it imports numpy with SIGINT/SIGTERM blocked
