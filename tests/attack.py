"""What an attack costs a server process, read from /proc: resident memory and CPU time.

Attack tests run a server as a subprocess (``tests.servers``) and compare these figures
before and after a bounded attack from 127.0.0.0/8."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field}")


def rss_mib(pid: int) -> float:
    """Resident set size now, in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The largest resident set size the process ever had (VmHWM), in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", utime and stime are fields 14 and 15 of stat(5): index 11, 12.
    return (int(fields[11]) + int(fields[12])) / _TICKS
