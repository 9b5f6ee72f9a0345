#!/usr/bin/env bash
# Serve the viewer for a trace:  bash scripts/serve_visualization.sh trace.json [PORT] [--no-patterns]
# Prints the address to open (and the SSH tunnel command for remote machines);
# Ctrl-C stops it. All the work is done by `python -m exporters.viewer`; run it
# with --help for every option. PYTHON picks the interpreter (default: python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m exporters.viewer "$@"
