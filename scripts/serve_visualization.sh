#!/usr/bin/env bash
# Serve the viewer for a trace:  bash scripts/serve_visualization.sh trace.json [PORT] [--no-patterns]
# Prints the address to open (and the SSH tunnel command for remote machines);
# Ctrl-C stops it. All the work is done by `python -m exporters.viewer`; run it
# with --help for every option.
#
# The interpreter: $PYTHON when set; else the one the tool was installed into
# (the interpreter of the `otel-tracer` command on PATH, the one `pip install`
# made); else python3. Not simply the first python3 on PATH, which may lack the
# tool's dependencies or have older versions of them.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

installed_python() {  # the interpreter on the first line of the otel-tracer command
    local command first
    command="$(command -v otel-tracer 2>/dev/null)" || return 1
    IFS= read -r first < "$command" || return 1
    case "$first" in
        '#!'*) first="${first#\#!}" ;;
        *) return 1 ;;
    esac
    [ -x "$first" ] && echo "$first"
}

python="${PYTHON:-}"
if [ -z "$python" ]; then
    python="$(installed_python)" || python=python3
fi
exec "$python" -m exporters.viewer "$@"
