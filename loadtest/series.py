"""The time series behind the plots of a `hotline loadtest run` report (pure, no matplotlib).

A run is cut into buckets of run time: one minute, or 10 s when the run is shorter than five
minutes (so a short run still shows a shape). Bucket k holds run seconds [k·w, (k+1)·w); the
last one ends with the run (`Bucket.end_s`), so it may be shorter.

Every call is counted in the bucket of its *offer*: its trace offset × the time scale, the
moment the run placed its INVITE (the run clock starts at the first call's start). So a
bucket says what became of the calls offered in it: offered = answered (carried) + abandoned
+ released + failed + cut + still open. Calls never attempted (due after ``--max-seconds``
or a signal ended the run) are in no bucket; `Series.not_attempted` counts them. Latencies
of a bucket are those of its calls, with the report's definitions (`report.setup_ms`, real
ms; `report.queue_wait_s`, trace s, answered calls only); a bucket without such calls has
None, drawn as a gap.

Node samples (``--node-pid``, once a second) go to the bucket of their time; a bucket's CPU
share is the CPU seconds used between consecutive samples ending in it over the seconds
between them, its RSS the largest sample in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from loadtest.report import CallResult, Outcome, Report, nearest_rank, queue_wait_s, setup_ms
from loadtest.sample import NodeSample

MINUTE_S = 60.0
SHORT_BUCKET_S = 10.0
SHORT_RUN_S = 300.0  # runs shorter than this get 10 s buckets


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    start_s: float  # run seconds
    end_s: float
    offered: int
    answered: int  # carried: an emulated agent answered
    abandoned: int
    released: int
    failed: int
    cut: int
    wait_p50_s: float | None  # trace seconds, answered calls
    wait_p95_s: float | None
    setup_p50_ms: float | None  # real milliseconds
    setup_p95_ms: float | None
    setup_p99_ms: float | None
    cpu_share: float | None  # of one core; None without node samples here
    rss_mb: float | None


class Series(msgspec.Struct, frozen=True, kw_only=True):
    width_s: float
    buckets: tuple[Bucket, ...]
    not_attempted: int  # calls in no bucket: never attempted
    node_sampled: bool  # the report holds node samples (CPU and RSS plots)

    @property
    def unit(self) -> str:
        """The bucket width as a phrase: "minute" or "10 s"."""
        return "minute" if self.width_s == MINUTE_S else f"{self.width_s:g} s"


def bucket_width(run_seconds: float) -> float:
    """One minute, or 10 s for a run shorter than five minutes."""
    return SHORT_BUCKET_S if run_seconds < SHORT_RUN_S else MINUTE_S


def bucket_count(span_s: float, width_s: float) -> int:
    """Buckets of `width_s` covering [0, `span_s`); at least one."""
    return max(1, math.ceil(span_s / width_s))


def bucket_of(at_s: float, width_s: float, count: int) -> int:
    """The bucket holding run second `at_s` (clamped to the first and the last)."""
    return min(count - 1, max(0, int(at_s // width_s)))


def _percentile(values: list[float], percent: float) -> float | None:
    return nearest_rank(sorted(values), percent)


def _cpu_by_bucket(
    samples: Sequence[NodeSample], width_s: float, count: int
) -> list[tuple[float, float]]:
    """(CPU seconds, seconds) per bucket from consecutive samples, each pair in the bucket of
    its later sample."""
    sums = [(0.0, 0.0)] * count
    for before, after in zip(samples, samples[1:], strict=False):
        span = after.at_s - before.at_s
        if span <= 0:
            continue
        k = bucket_of(after.at_s, width_s, count)
        cpu, seconds = sums[k]
        sums[k] = (cpu + max(0.0, after.cpu_s - before.cpu_s), seconds + span)
    return sums


def series(report: Report, calls: Sequence[CallResult]) -> Series:
    """The buckets of a run from its report and its calls (see the module docstring)."""
    width = bucket_width(report.run_seconds)
    count = bucket_count(report.run_seconds, width)
    outcomes: list[dict[Outcome, int]] = [dict.fromkeys(Outcome, 0) for _ in range(count)]
    offered = [0] * count
    waits: list[list[float]] = [[] for _ in range(count)]
    setups: list[list[float]] = [[] for _ in range(count)]
    not_attempted = 0
    for call in calls:
        if call.invite_at is None:
            not_attempted += 1
            continue
        k = bucket_of(call.offset_s * report.time_scale, width, count)
        offered[k] += 1
        if call.outcome is not None:
            outcomes[k][call.outcome] += 1
        wait = queue_wait_s(call, report.time_scale)
        if wait is not None:
            waits[k].append(wait)
        setup = setup_ms(call)
        if setup is not None:
            setups[k].append(setup)
    samples = sorted(report.node.series, key=lambda s: s.at_s) if report.node else []
    cpu = _cpu_by_bucket(samples, width, count)
    rss: list[float | None] = [None] * count
    for sample in samples:
        k = bucket_of(sample.at_s, width, count)
        rss[k] = max(rss[k] or 0.0, sample.rss_mb)
    buckets = tuple(
        Bucket(
            start_s=k * width,
            end_s=min((k + 1) * width, max(report.run_seconds, k * width)),
            offered=offered[k],
            answered=outcomes[k][Outcome.ANSWERED],
            abandoned=outcomes[k][Outcome.ABANDONED],
            released=outcomes[k][Outcome.RELEASED],
            failed=outcomes[k][Outcome.FAILED],
            cut=outcomes[k][Outcome.CUT],
            wait_p50_s=_percentile(waits[k], 50),
            wait_p95_s=_percentile(waits[k], 95),
            setup_p50_ms=_percentile(setups[k], 50),
            setup_p95_ms=_percentile(setups[k], 95),
            setup_p99_ms=_percentile(setups[k], 99),
            cpu_share=cpu[k][0] / cpu[k][1] if cpu[k][1] > 0 else None,
            rss_mb=rss[k],
        )
        for k in range(count)
    )
    return Series(
        width_s=width, buckets=buckets, not_attempted=not_attempted, node_sampled=bool(samples)
    )
