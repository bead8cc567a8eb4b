"""The plots of a `hotline loadtest` report as PNG (matplotlib, the Agg canvas: never a display).

matplotlib is an optional extra (``pip install 'hotline[plots]'``): `require_matplotlib`
says so in one line before a run starts, and nothing else here imports it until a plot is
drawn. The data come from `loadtest.series`; this module only draws:

- ``calls``: per bucket, the calls offered and, of those, carried (answered by an agent),
  abandoned, released by the node and failed;
- ``waits``: queue wait p50 and p95 of the calls an agent answered (trace seconds);
- ``setup``: setup time (INVITE → first 1xx or 200) p50, p95 and p99 (real ms);
- ``node``: with ``--node-pid``, the node's CPU share of one core and its resident memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from loadtest.report import CallResult, Report
from loadtest.series import MINUTE_S, Series, series

if TYPE_CHECKING:
    from matplotlib.axes import Axes

INSTALL_HINT = "pip install 'hotline[plots]'"
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 3.2, 100
MARKERS_UP_TO = 120  # buckets; beyond, lines without markers
COLOURS = {
    "offered": "#b0b7c3",
    "answered": "#1a7f37",
    "abandoned": "#d4760a",
    "released": "#8250df",
    "failed": "#cf222e",
    "p50": "#0969da",
    "p95": "#d4760a",
    "p99": "#cf222e",
    "rss": "#8250df",
}


class PlotsUnavailableError(Exception):
    """matplotlib is not installed: one line that says how to install it."""


class Plot(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # file stem: calls, waits, setup, node
    title: str
    caption: str  # how to read it
    png: bytes


def require_matplotlib(options: str = "--plots and --html") -> None:
    """`PlotsUnavailableError` unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotsUnavailableError(f"{options} need matplotlib: {INSTALL_HINT}") from None


def _values(values: Sequence[float | None], factor: float = 1.0) -> list[float]:
    return [math.nan if v is None else v * factor for v in values]


def _axis(data: Series) -> tuple[list[float], list[float], str]:
    """Bucket midpoints, widths (minutes for minute buckets, else seconds) and the label."""
    scale = MINUTE_S if data.width_s == MINUTE_S else 1.0
    unit = "min" if scale == MINUTE_S else "s"
    mids = [(b.start_s + b.end_s) / 2 / scale for b in data.buckets]
    widths = [max(b.end_s - b.start_s, 1e-9) / scale for b in data.buckets]
    return mids, widths, f"run time ({unit})"


def _marker(data: Series, marker: str = "o") -> str:
    return marker if len(data.buckets) <= MARKERS_UP_TO else ""


def _draw(draw: Callable[[Axes], None], label: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw(axes)
    axes.set_xlabel(label)
    axes.grid(True, alpha=0.3)
    axes.set_xlim(left=0)
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def _calls_plot(data: Series) -> Callable[[Axes], None]:
    mids, widths, _ = _axis(data)
    b = data.buckets

    def draw(axes: Axes) -> None:
        offered = [x.offered for x in b]
        axes.bar(
            mids, offered, widths, color=COLOURS["offered"], edgecolor="white", label="offered"
        )
        for name, label in (
            ("answered", "carried (answered)"),
            ("abandoned", "abandoned"),
            ("released", "released by the node"),
            ("failed", "failed"),
        ):
            counts = [getattr(x, name) for x in b]
            if name in ("released", "failed") and not any(counts):
                continue
            axes.plot(mids, counts, marker=_marker(data), ms=3, color=COLOURS[name], label=label)
        axes.set_ylabel(f"calls per {data.unit}")
        axes.set_ylim(bottom=0)
        axes.legend(loc="upper left", fontsize="small")

    return draw


def _lines(
    data: Series, fields: Sequence[tuple[str, str, str]], ylabel: str, empty: str
) -> Callable[[Axes], None]:
    mids, _, _ = _axis(data)

    def draw(axes: Axes) -> None:
        drawn = False
        for field, label, colour in fields:
            values = _values([getattr(x, field) for x in data.buckets])
            drawn = drawn or not all(math.isnan(v) for v in values)
            axes.plot(mids, values, marker=_marker(data), ms=3, color=COLOURS[colour], label=label)
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        if drawn:
            axes.legend(loc="upper left", fontsize="small")
        else:
            axes.text(0.5, 0.5, empty, transform=axes.transAxes, ha="center", va="center")

    return draw


def _node_plot(data: Series) -> Callable[[Axes], None]:
    mids, _, _ = _axis(data)

    def draw(axes: Axes) -> None:
        cpu = _values([x.cpu_share for x in data.buckets], 100.0)
        axes.plot(mids, cpu, marker=_marker(data), ms=3, color=COLOURS["p50"], label="CPU")
        axes.set_ylabel("CPU (% of one core)")
        axes.set_ylim(bottom=0, top=max(100.0, *(v for v in cpu if not math.isnan(v))) * 1.05)
        memory = axes.twinx()
        rss = _values([x.rss_mb for x in data.buckets])
        memory.plot(mids, rss, marker=_marker(data, "s"), ms=3, color=COLOURS["rss"], label="RSS")
        memory.set_ylabel("resident memory (MB)")
        memory.set_ylim(bottom=0)
        lines = axes.get_lines() + memory.get_lines()
        axes.legend(lines, [str(line.get_label()) for line in lines], loc="best")

    return draw


def plots(report: Report, calls: Sequence[CallResult]) -> list[Plot]:
    """Every plot of the report, drawn (needs matplotlib: see `require_matplotlib`)."""
    require_matplotlib()
    data = series(report, calls)
    _, _, label = _axis(data)
    per = f"per {data.unit} of run time, each call in the {data.unit} it was offered"
    left = (
        f"; {data.not_attempted} calls never attempted are not shown" if data.not_attempted else ""
    )
    made = [
        Plot(
            name="calls",
            title="Offered and carried calls",
            caption=f"Calls {per}{left}. The grey bar is what the trace offered; the green line "
            "what agents answered. A gap between them is the calls lost: abandoned (the "
            "caller's patience ran out), released by the node or failed. The last bucket "
            "may be shorter than the others.",
            png=_draw(_calls_plot(data), label),
        ),
        Plot(
            name="waits",
            title="Queue waits",
            caption=f"Queue wait (IVR done → the agent's answer) of the answered calls, {per}, "
            "in trace seconds, p50 and p95 (nearest rank). A rising p95 with a flat p50 is "
            "a few callers waiting long; both rising is the agents falling behind.",
            png=_draw(
                _lines(
                    data,
                    (("wait_p50_s", "p50", "p50"), ("wait_p95_s", "p95", "p95")),
                    "queue wait (trace s)",
                    "no call was answered by an agent",
                ),
                label,
            ),
        ),
        Plot(
            name="setup",
            title="Setup time",
            caption=f"Setup time (INVITE → first 1xx or 200) in real milliseconds, {per}, p50, "
            "p95 and p99. The switch's own latency: it grows before calls start failing, "
            "so a p95 that climbs bucket after bucket is the first sign of overload.",
            png=_draw(
                _lines(
                    data,
                    (
                        ("setup_p50_ms", "p50", "p50"),
                        ("setup_p95_ms", "p95", "p95"),
                        ("setup_p99_ms", "p99", "p99"),
                    ),
                    "setup (ms)",
                    "no INVITE got a response",
                ),
                label,
            ),
        ),
    ]
    if data.node_sampled:
        made.append(
            Plot(
                name="node",
                title="Node CPU and memory",
                caption=f"The node's CPU time (user + system, all threads) as a share of one "
                f"core, and its largest resident memory, {per.split(',')[0]} (sampled once "
                "a second with --node-pid). CPU near 100 % of one core is the node's limit "
                "(its event loop is one thread); memory that keeps growing over a steady "
                "load is a leak.",
                png=_draw(_node_plot(data), label),
            )
        )
    return made


def write_plots(directory: Path, made: Sequence[Plot]) -> list[Path]:
    """The plots as DIRECTORY/NAME.png (the directory made if needed); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for plot in made:
        path = directory / f"{plot.name}.png"
        path.write_bytes(plot.png)
        paths.append(path)
    return paths
