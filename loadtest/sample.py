"""The node's CPU time and memory during `hotline loadtest run --node-pid PID` (Linux /proc).

A run against a node on the same machine can name its process; the run then reads
``/proc/PID/stat`` (user + system CPU time, all threads) and ``/proc/PID/status`` (VmRSS) once
a second and reports the CPU the node used from the first call's start to the end of the run,
per attempted call, its mean share of one core, and its largest resident memory; every
sample is kept (`NodeSample`, times in run seconds from the first call's start) for the
report's plots. Reading /proc is the only I/O here; `parse_stat`, `parse_rss` and
`parse_udp_drops` are pure.

`udp_drops` counts the datagrams the kernel dropped on the process's UDP sockets because
their receive buffers were full (the `drops` column of /proc/net/udp and udp6, summed over the
sockets the process holds): the overload a zero failure count can hide, since SIP retransmits.
The sampler reads it at the first call's start and at the end of the run (`mark_drops`); the
report gives the difference.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class NodeSample(msgspec.Struct, frozen=True, array_like=True):
    """One reading: run seconds from the first call's start, the CPU seconds used since the
    first reading, resident memory in MB (a JSON array of three numbers)."""

    at_s: float
    cpu_s: float
    rss_mb: float


class NodeUsage(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    cpu_s: float  # user + system over the run
    cpu_ms_per_call: float | None
    cpu_share: float  # of one core, over the run
    rss_mb_max: float
    samples: int
    udp_drops: int | None = None  # receive-buffer drops on its UDP sockets during the run
    series: tuple[NodeSample, ...] = ()  # every sample (reports before the plots: none)


class SampleError(Exception):
    """The process cannot be read (gone, not ours, not Linux): one line."""


def parse_stat(text: str) -> float:
    """User + system CPU seconds from a /proc/PID/stat line (fields 14 and 15, counted after
    the parenthesised command name, which may itself hold spaces and parentheses)."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): utime is field 14, stime field 15
    return (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


def parse_rss(text: str) -> float:
    """VmRSS of a /proc/PID/status text, in MB (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def parse_udp_drops(table: str, inodes: set[str]) -> int:
    """Sum of the `drops` column of a /proc/net/udp(6) text over the sockets `inodes`."""
    total = 0
    for line in table.splitlines()[1:]:
        fields = line.split()
        # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        if len(fields) >= 13 and fields[9] in inodes:
            total += int(fields[12])
    return total


def socket_inodes(pid: int, proc: Path = Path("/proc")) -> set[str]:
    """The inode numbers of the sockets process `pid` holds open (`SampleError` if unreadable)."""
    inodes = set()
    try:
        entries = list((proc / str(pid) / "fd").iterdir())
    except OSError as exc:
        raise SampleError(f"pid {pid}: cannot list its file descriptors: {exc}") from None
    for entry in entries:
        try:
            link = os.readlink(entry)
        except OSError:
            continue  # closed since the listing
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def udp_drops(pid: int, proc: Path = Path("/proc")) -> int:
    """Datagrams dropped so far on the receive buffers of process `pid`'s UDP sockets."""
    inodes = socket_inodes(pid, proc)
    total = 0
    for name in ("udp", "udp6"):
        try:
            total += parse_udp_drops((proc / "net" / name).read_text(encoding="ascii"), inodes)
        except OSError:
            continue  # no IPv6 in this kernel
    return total


class NodeSampler:
    """Samples one process; `sample()` once a second, `usage()` at the end."""

    def __init__(self, pid: int, proc: Path = Path("/proc")) -> None:
        self.pid = pid
        self._dir = proc / str(pid)
        self.first: tuple[float, float] | None = None  # (when, cpu s)
        self.last: tuple[float, float] | None = None
        self.rss_max = 0.0
        self.samples = 0
        self.readings: list[tuple[float, float, float]] = []  # (when, cpu s, rss MB)
        self.drops: list[int] = []  # udp_drops at the run's start and end (`mark_drops`)
        self._proc = proc

    def read(self) -> tuple[float, float]:
        """(CPU seconds, RSS MB) now; `SampleError` when the process cannot be read."""
        try:
            stat = (self._dir / "stat").read_text(encoding="ascii", errors="replace")
            status = (self._dir / "status").read_text(encoding="ascii", errors="replace")
            return parse_stat(stat), parse_rss(status)
        except (OSError, ValueError, IndexError) as exc:
            raise SampleError(f"--node-pid {self.pid}: cannot read /proc: {exc}") from None

    def sample(self, now: float) -> None:
        try:
            cpu, rss = self.read()
        except SampleError:
            return  # the node went away during the run: keep what was seen
        if self.first is None:
            self.first = (now, cpu)
        self.last = (now, cpu)
        self.rss_max = max(self.rss_max, rss)
        self.samples += 1
        self.readings.append((now, cpu, rss))

    def mark_drops(self) -> None:
        """Read the UDP receive drops so far (at the start and at the end of the run)."""
        try:
            self.drops.append(udp_drops(self.pid, self._proc))
        except SampleError:
            return  # gone, or its sockets cannot be listed: no drop figure

    def usage(self, attempted: int, origin: float | None = None) -> NodeUsage | None:
        """The run's figures; the samples' times are taken from `origin` (the first call's
        start; default the first sample)."""
        if self.first is None or self.last is None:
            return None
        start = self.first[0] if origin is None else origin
        series = tuple(
            NodeSample(at_s=when - start, cpu_s=max(0.0, cpu - self.first[1]), rss_mb=rss)
            for when, cpu, rss in self.readings
        )
        cpu = max(0.0, self.last[1] - self.first[1])
        span = self.last[0] - self.first[0]
        return NodeUsage(
            pid=self.pid,
            cpu_s=cpu,
            cpu_ms_per_call=cpu * 1000.0 / attempted if attempted else None,
            cpu_share=cpu / span if span > 0 else 0.0,
            rss_mb_max=self.rss_max,
            samples=self.samples,
            udp_drops=max(0, self.drops[-1] - self.drops[0]) if len(self.drops) > 1 else None,
            series=series,
        )
