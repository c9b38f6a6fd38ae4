"""Timing helpers shared by the benchmarks in bench/ (not part of drctl).

`median_seconds` times an in-process step; `run_process` times a whole
command and reads its own peak RSS.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def median_seconds(runs: int, action: Callable[[], object]) -> float:
    """Median wall time of `runs` calls of `action`; freeing its result is not timed."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - began)
        del result
    return statistics.median(times)


# Spawns ARGV, waits, and prints its wall seconds, peak RSS and exit code on
# stderr. A small process in between because Linux counts in a child's peak
# RSS the memory of the process that forked it (the high-water mark of the
# address space it leaves at exec): from a benchmark's big heap, every child
# would seem to need it.
_MEASURE = """\
import os, sys, time
began = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - began, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
      usage.ru_utime + usage.ru_stime, file=sys.stderr)
"""


def run_process(argv: list[str], stdout: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of `argv`, its own and no other's."""
    seconds, mb, _cpu = run_process_cpu(argv, stdout)
    return seconds, mb


def run_process_cpu(argv: list[str], stdout: Path) -> tuple[float, float, float]:
    """`run_process`, and the CPU seconds (user + system) the process used: on a
    machine shared with other work, wall time counts their share too."""
    with stdout.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, *argv], stdout=out, stderr=subprocess.PIPE, check=False
        )
    *errors, last = done.stderr.decode().splitlines() or [""]
    seconds, max_rss_kib, code, cpu = last.split()
    if done.returncode != 0 or code != "0":
        raise SystemExit(f"{' '.join(argv)} exited {code}:\n" + "\n".join(errors))
    return float(seconds), int(max_rss_kib) / 1024, float(cpu)
