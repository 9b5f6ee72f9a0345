"""Command-line interface of the otel-tracer: ``python -m cli.main <script> [options]``."""
