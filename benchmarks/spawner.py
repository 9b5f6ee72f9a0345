"""Minimal process launcher used by ``run.py`` (run it with ``python -S``).

Linux charges a child's ``ru_maxrss`` with the peak RSS of the process it was
forked/vforked from (``exec`` keeps the old address space's high-water mark), so
children launched straight from the runner, whose memory grows while it reads
trace files, would all report at least the runner's peak. This launcher stays
tiny (about 11 MiB, below a bare ``python -c pass`` at about 13 MiB) and starts
every measured child as a ``subprocess.Popen`` reaped with ``os.wait4``.

Protocol, one request per stdin line: ``OUT\\x1fERR\\x1fARGV0\\x1fARGV1...``
(stdout and stderr file paths, then the absolute command line). Reply, one line:
``EXIT_CODE WALL_SECONDS MAXRSS_KIB``. The children inherit this process's
environment and working directory.
"""

import os
import subprocess
import sys
import time

SEP = "\x1f"


def launch(request: str) -> str:
    """Run one request to completion; its reply line."""
    out_path, err_path, *argv = request.split(SEP)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    maxrss = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return f"{proc.returncode} {wall:.6f} {maxrss}\n"


def main() -> None:
    """Serve requests until stdin closes."""
    for line in sys.stdin:
        sys.stdout.write(launch(line.rstrip("\n")))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
