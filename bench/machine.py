"""What the benchmarks report about the machine and their processes: cores, memory, CPU."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def cpus() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def peak_rss_mb() -> float:
    """This process's peak resident memory, native allocations (DuckDB's) included."""
    # VmHWM is the high-water mark of this program's own memory; ru_maxrss would also carry
    # the parent's size at fork time across exec
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def rss_mb(pid: int) -> float:
    """Resident memory of a process now (NaN where /proc is missing)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _group_stats(group: int) -> list[tuple[int, list[str]]]:
    """(pid, /proc stat fields after the name) of every process in a process group."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ...
            out.append((int(stat.parent.name), fields))
    return out


def group_rss_mb(group: int) -> float:
    """Resident memory of every process in a process group (a server and its workers)."""
    return sum(rss_mb(pid) for pid, _ in _group_stats(group))


def group_cpu_seconds(group: int) -> float:
    """CPU time (user + system) used so far by the live processes of a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    # utime and stime are fields 14 and 15 of /proc/<pid>/stat, 12 and 13 after the name
    return sum(int(f[11]) + int(f[12]) for _, f in _group_stats(group)) / ticks
