"""This tool's version (pyproject.toml reads it from here): a constant, so that
knowing it costs a traced process no import of ``importlib.metadata``."""

VERSION = "0.1.0"
