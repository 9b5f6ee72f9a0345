"""N small in-scope calls in a loop, then this process's VmRSS and VmHWM (KiB):
the memory while recording, for benchmarks/streaming.py."""

import sys


def step(i):
    return i + 1


def run(n):
    total = 0
    for _ in range(n):
        total = step(total)
    return total


def memory_kib():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields["VmRSS"]), int(fields["VmHWM"])


run(int(sys.argv[1]))
print("memory", *memory_kib())
