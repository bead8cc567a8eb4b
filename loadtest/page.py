"""The report of a `hotline loadtest` run as one self-contained HTML page (``--html FILE``).

One file a load tester can mail or attach to a tender answer: the tender figures of SPEC §10
beside their targets, the counts, the latency percentiles, the RPT-3 KPIs, the node's CPU
and memory, the printed report itself, and the plots of `loadtest.plots` embedded as
``data:image/png;base64`` URIs. No script, no stylesheet or image from anywhere else: it
opens the same offline. (Named page, not html, so that ``import html`` stays the standard
library's.)
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from loadtest.plots import Plot
from loadtest.report import Percentiles, Report, format_report

# SPEC §10: (figure, tender target, project goal)
TENDER_BHCA = 450_000.0
GOAL_BHCA = 1_000_000.0
TENDER_FAILURE = 4e-4
GOAL_FAILURE = 1e-5
TENDER_RELEASE_FAILURE = 2e-5
TENDER_PREMATURE = 2e-5  # premature release probability, per answered call
TENDER_COMPLETION = 0.9996
GOAL_COMPLETION = 0.99999

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #1f2328; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f6f8fa; }
.yes { color: #1a7f37; } .no { color: #cf222e; font-weight: bold; } .na { color: #656d76; }
figure { margin: 1em 0; } figcaption { color: #57606a; font-size: 0.9em; max-width: 50em; }
img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _share(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}" if value else "0"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of already escaped cells."""
    top = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return '<span class="na">not measured</span>'
    return '<span class="yes">yes</span>' if ok else '<span class="no">no</span>'


def tender_rows(report: Report) -> list[list[str]]:
    """(figure, measured, tender target, project goal, meets the tender) rows, escaped.

    Release failure is our BYEs that got no 2xx per attempted call; completion (system side)
    is 1 − the call processing failure rate. Premature release (the switch ending a call
    that should have stayed up) is not told apart by the replay yet."""
    r = report
    attempted = r.attempted
    release = r.bye_failures / attempted if attempted else None
    completion = 1.0 - r.failure_rate if r.failure_rate is not None else None
    bhca_note = " (rate of a run shorter than a trace hour)" if r.bhca_extrapolated else ""
    return [
        [
            "busy-hour call attempts (trace hour)",
            _e(_num(r.bhca, 0) + bhca_note),
            "&gt; 450,000",
            "≥ 1,000,000",
            _verdict(None if r.bhca is None else r.bhca > TENDER_BHCA),
        ],
        [
            "call processing failure rate",
            _e(f"{_sci(r.failure_rate)} ({r.failed} of {attempted})"),
            "≤ 4 × 10⁻⁴",
            "≤ 1 × 10⁻⁵",
            _verdict(None if r.failure_rate is None else r.failure_rate <= TENDER_FAILURE),
        ],
        [
            "premature release probability",
            "-"
            if r.premature_releases is None
            else _e(
                f"{_sci(r.premature_release_rate)} ({r.premature_releases} of {r.answered} "
                "answered calls ended by the node first)"
            ),
            "≤ 2 × 10⁻⁵",
            "0 observed",
            _verdict(
                None
                if r.premature_release_rate is None
                else r.premature_release_rate <= TENDER_PREMATURE
            ),
        ],
        [
            "release failure probability",
            _e(f"{_sci(release)} ({r.bye_failures} BYEs without a 2xx)"),
            "≤ 2 × 10⁻⁵",
            "0 observed",
            _verdict(None if release is None else release <= TENDER_RELEASE_FAILURE),
        ],
        [
            "call completion (system side)",
            _e(_share(completion, 4)),
            "&gt; 99.96 %",
            "&gt; 99.999 %",
            _verdict(None if completion is None else completion > TENDER_COMPLETION),
        ],
    ]


def _percentile_row(name: str, p: Percentiles, unit: str) -> list[str]:
    return [_e(name), str(p.count)] + [
        _e(_num(v)) for v in (p.p50, p.p95, p.p99, p.max)
    ] + [_e(unit)]  # fmt: skip


def _figures(made: Sequence[Plot]) -> str:
    parts = []
    for plot in made:
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(
            f'<h2 id="{_e(plot.name)}">{_e(plot.title)}</h2><figure>'
            f'<img alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(plot.caption)}</figcaption></figure>"
        )
    return "".join(parts)


def render(report: Report, made: Sequence[Plot]) -> str:
    """The whole page."""
    r = report
    k = r.kpis
    counts = [
        [_e(name), str(value)]
        for name, value in (
            ("offered", r.offered),
            ("attempted", r.attempted),
            ("answered (carried)", r.answered),
            ("abandoned", r.abandoned),
            ("released by the node", r.released),
            ("failed", r.failed),
            ("cut (unanswered at the end)", r.cut),
            ("answered, cut short", r.cut_short),
        )
    ]
    counts += [[_e(f"failed: {why}"), str(n)] for why, n in sorted(r.failures.items())]
    latencies = [
        _percentile_row("setup (INVITE → 1xx/200)", r.setup_ms, "ms"),
        _percentile_row("IVR response (200 → RTP)", r.ivr_response_ms, "ms")
        if "ivr_response_ms" not in r.not_measured
        else [_e("IVR response (200 → RTP)"), _verdict(None), "", "", "", "", ""],
        _percentile_row("queue wait (IVR done → agent)", r.queue_wait_s, "s (trace)"),
    ]
    kpis = [
        ["queued", str(k.queued)],
        ["answered", f"{k.answered} ({k.answered_in_time} within 15 s)"],
        ["abandoned", f"{k.abandoned} ({k.abandoned_short} within 20 s)"],
        ["service level (15 s)", _e(_share(k.service_level))],
        ["human answer rate", _e(_share(k.human_answer_rate))],
        ["mean wait", _e(f"{_num(k.mean_wait_s)} s")],
    ]
    node = ""
    if r.node is not None:
        n = r.node
        drops = "-" if n.udp_drops is None else str(n.udp_drops)
        node = "<h2>Node</h2>" + _table(
            ["figure", "value"],
            [
                ["pid", str(n.pid)],
                ["CPU", _e(f"{n.cpu_s:.2f} s ({_num(n.cpu_ms_per_call, 2)} ms per call)")],
                ["share of one core", _e(f"{n.cpu_share:.0%}")],
                ["resident memory, largest", _e(f"{n.rss_mb_max:.0f} MB")],
                ["UDP receive drops", drops],
                ["samples", str(n.samples)],
            ],
        )
    title = f"hotline loadtest: {r.trace} → {r.target}"
    summary = f"time scale {r.time_scale:g}, {r.agents} emulated agents, {r.run_seconds:.1f} s" + (
        ", interrupted" if r.interrupted else ""
    )
    text = "\n".join(format_report(r))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{_e(summary)}</p>"
        "<h2>Tender figures (SPEC §10)</h2>"
        + _table(
            ["figure", "measured", "tender target", "project goal", "meets the tender"],
            tender_rows(r),
        )
        + "<h2>Calls</h2>"
        + _table(["calls", "count"], counts)
        + "<h2>Latencies</h2>"
        + _table(["", "count", "p50", "p95", "p99", "max", "unit"], latencies)
        + "<h2>KPIs (SPEC RPT-3)</h2>"
        + _table(["KPI", "value"], kpis)
        + node
        + _figures(made)
        + f"<h2>The report as printed</h2><pre>{_e(text)}</pre>"
        + "</body></html>\n"
    )
