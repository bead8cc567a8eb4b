"""`hotline loadtest …`: make and check the call traces a load test replays (docs/loadtest.md).

- ``generate``: a seeded synthetic trace (`loadtest.generate`).
- ``from-cdr``: a trace of real calls from a node's ``DATA/hotline.db`` (`loadtest.from_cdr`).
- ``check``: validate a trace and print a summary.
- ``run``: replay a trace against a SIP target with emulated callers and agents, and report
  (`loadtest.run`, `loadtest.report`); ``--plots DIR`` and ``--html FILE`` draw it
  (`loadtest.plots`, `loadtest.page`; matplotlib).
- ``report``: the table, plots and page again from a run's ``--json`` file.

Exit status: 0 done; 1 an invalid trace or database, or a run that could not be done (target
silent, agents not registered, a saved report unreadable: one line), each problem one line
on stderr (a trace's as ``file:line: column: message``); 2 the command line is wrong, or
``--plots``/``--html`` without matplotlib (one line, ``hotline: …``), before any call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtest import generate as gen
from loadtest.agents import AgentAccount, AgentSetupError, load_agents
from loadtest.from_cdr import DB_NAME, CdrTraceError, trace_from_cdr
from loadtest.page import render
from loadtest.plots import PlotsUnavailableError, plots, require_matplotlib, write_plots
from loadtest.report import CallResult, Report, ReportFileError, format_report, read_report_json
from loadtest.run import RunError, RunOptions, run_trace, write_json
from loadtest.trace import Trace, TraceError, format_seconds, read_trace, write_trace
from recorder.cli import _TIME_HELP, CliError, parse_time


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `loadtest` command and its actions, on `hotline`'s subparsers."""
    loadtest = sub.add_parser(
        "loadtest",
        help="call traces for load tests: generate, convert from the CDR, check, run",
        description="Traces are CSV (or .parquet with pyarrow); see docs/loadtest.md.",
    )
    actions = loadtest.add_subparsers(dest="action", required=True)
    g = actions.add_parser("generate", help="a seeded synthetic trace")
    g.add_argument("--out", required=True, metavar="FILE", help="trace to write (.csv, .parquet)")
    g.add_argument("--seed", type=int, default=0, help="random seed (0)")
    g.add_argument("--hours", default="08-20", help="clock hours START-END (08-20)")
    g.add_argument(
        "--profile", default="hotline-day", help="hotline-day, flat, or a CSV/YAML of 24 weights"
    )
    rate = g.add_mutually_exclusive_group()
    rate.add_argument("--bhca", type=float, help="calls in the busiest hour (1000)")
    rate.add_argument(
        "--calls-per-hour", type=float, help="the same, read naturally with --profile flat"
    )
    g.add_argument("--called", default="12345", help="called number (12345)")
    g.add_argument("--talk", default="exp:180", help="talk time distribution (exp:180)")
    g.add_argument("--wrap", default="fixed:15", help="wrap-up distribution (fixed:15)")
    g.add_argument(
        "--patience", default="60", help="mean patience in queue, exponential (60); none: forever"
    )
    g.add_argument("--regions", metavar="FILE", help="caller regions (CSV or YAML)")
    g.add_argument("--keys", metavar="FILE", help="IVR key sequences and think time (YAML)")

    c = actions.add_parser("from-cdr", help="a trace of the calls in a node's CDR")
    c.add_argument("--data", default="var", help=f"data directory holding {DB_NAME} (var)")
    c.add_argument("--out", required=True, metavar="FILE", help="trace to write")
    c.add_argument(
        "--from", dest="start", metavar="T", help=f"calls started at or after T: {_TIME_HELP}"
    )
    c.add_argument("--to", dest="end", metavar="T", help="calls started before T (a date: its end)")
    c.add_argument("--day", metavar="YYYY-MM-DD", help="the calls of that day (local time)")
    c.add_argument(
        "--config", metavar="DIR", help="configuration whose flows give the IVR keys and regions"
    )
    c.add_argument("--think", type=float, default=2.0, help="think time before each key (2)")
    c.add_argument(
        "--wrap", type=float, default=0.0, help="wrap-up when neither log nor queue gives one (0)"
    )
    c.add_argument(
        "--answered-patience",
        type=float,
        metavar="MARGIN",
        help="give answered callers a patience of their wait + MARGIN s (default: none)",
    )

    k = actions.add_parser("check", help="validate a trace and print a summary")
    k.add_argument("trace", metavar="FILE")
    _add_run_parser(actions)
    p = actions.add_parser(
        "report",
        help="print a saved run report (run --json) again, with its plots and HTML page",
        description="Reads the JSON `hotline loadtest run --json FILE` wrote; see docs/loadtest.md.",
    )
    p.add_argument("json_report", metavar="REPORT.json")
    _add_plot_options(p)


def _add_plot_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plots", metavar="DIR", help="write the plots as DIR/*.png (needs matplotlib)"
    )
    parser.add_argument(
        "--html", metavar="FILE", help="write one self-contained HTML page (needs matplotlib)"
    )


def _add_run_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = actions.add_parser(
        "run",
        help="replay a trace against a SIP target with emulated callers and agents",
        description="Callers INVITE the target at the trace's times (scaled), press the "
        "IVR keys, wait with their patience, talk and hang up; emulated agents register and "
        "answer. See docs/loadtest.md.",
    )
    r.add_argument("trace", metavar="TRACE")
    r.add_argument("--target", required=True, metavar="HOST:PORT", help="the SIP target (UDP)")
    r.add_argument(
        "--time-scale", type=float, default=1.0, metavar="F",
        help="run seconds per trace second for every trace time (1; 0.1: ten times faster)",
    )  # fmt: skip
    r.add_argument("--agents", type=int, metavar="N", help="emulated agents (default: all)")
    who = r.add_mutually_exclusive_group()
    who.add_argument(
        "--register-agents", metavar="FILE", help="agents.yaml whose agents register (password)"
    )
    who.add_argument(
        "--agent-password-file", metavar="FILE", help="lines of ID PASSWORD for the agents"
    )
    r.add_argument(
        "--answer-delay", type=float, default=1.0, metavar="S",
        help="agents answer S trace seconds after the INVITE (1)",
    )  # fmt: skip
    r.add_argument(
        "--wrap-up", type=float, default=0.0, metavar="S",
        help="the node's queue wrap-up, for the staffing model (0)",
    )  # fmt: skip
    r.add_argument(
        "--max-seconds", type=float, default=3600.0, metavar="S",
        help="end the run after S real seconds, hanging up what is left (3600)",
    )  # fmt: skip
    r.add_argument("--limit", type=int, metavar="N", help="replay only the first N calls")
    r.add_argument("--local-ip", default="127.0.0.1", help="address to send from (127.0.0.1)")
    r.add_argument(
        "--rtp-ports", default="30000-32767", metavar="MIN-MAX",
        help="RTP ports of the emulated parties (30000-32767; not the node's own range)",
    )  # fmt: skip
    r.add_argument("--json", metavar="FILE", help="also write the report as JSON (- for stdout)")
    r.add_argument(
        "--node-pid", type=int, metavar="PID", help="sample this local node's CPU and memory"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    r.add_argument(
        "--engine", choices=("python", "sipp"), default="python",
        help="who plays the callers: the project's own SIP core (python, the default) or SIPp",
    )  # fmt: skip
    sipp_help = "--engine sipp: split the calls across N SIPp processes (1)"
    r.add_argument("--generators", type=int, default=1, metavar="N", help=sipp_help)
    r.add_argument("--sipp-binary", default="sipp", metavar="PATH", help="the sipp to run (sipp)")
    r.add_argument(
        "--sipp-rtp", choices=("silence", "none"), default="silence",
        help="--engine sipp: RTP silence while a call is up (silence), or none",
    )  # fmt: skip
    r.add_argument(
        "--sipp-dir",
        metavar="DIR",
        help="--engine sipp: keep SIPp's files here (default: a temp dir)",
    )
    _add_plot_options(r)


def _generator_spec(args: argparse.Namespace) -> gen.GeneratorSpec:
    profile_name, profile = gen.load_profile(args.profile)
    bhca = args.bhca if args.bhca is not None else args.calls_per_hour
    if bhca is not None and bhca <= 0:
        raise gen.GeneratorError("--bhca: expected a number of calls > 0")
    patience: float | None = None
    if args.patience.lower() != "none":
        try:
            patience = float(args.patience)
        except ValueError:
            patience = -1.0
        if not patience > 0:
            raise gen.GeneratorError(f"--patience {args.patience!r}: expected seconds > 0 or none")
    return gen.GeneratorSpec(
        seed=args.seed,
        hours=gen.parse_hours(args.hours),
        profile=profile,
        profile_name=profile_name,
        bhca=1000.0 if bhca is None else bhca,
        called=_digits(args.called, "--called"),
        regions=gen.load_regions(Path(args.regions)) if args.regions else gen.DEFAULT_REGIONS,
        menu=gen.load_menu(Path(args.keys)) if args.keys else gen.DEFAULT_MENU,
        patience_s=patience,
        talk=_distribution(args.talk, "--talk"),
        wrap=_distribution(args.wrap, "--wrap"),
    )


def _digits(text: str, option: str) -> str:
    if not text.isdigit():
        raise gen.GeneratorError(f"{option} {text!r}: expected digits")
    return text


def _distribution(text: str, option: str) -> gen.Distribution:
    try:
        return gen.Distribution.parse(text)
    except gen.GeneratorError as exc:
        raise gen.GeneratorError(f"{option} {exc}") from None


def _window(args: argparse.Namespace) -> tuple[float | None, float | None]:
    if args.day is not None:
        if args.start is not None or args.end is not None:
            raise CliError("--day and --from/--to exclude each other", 2)
        return parse_time(args.day, "--day"), parse_time(args.day, "--day", end_of_day=True)
    start = parse_time(args.start, "--from") if args.start else None
    end = parse_time(args.end, "--to", end_of_day=True) if args.end else None
    return start, end


def _from_cdr(args: argparse.Namespace) -> int:
    start, end = _window(args)
    flows = region_of = wrap_ups = None
    if args.config is not None:
        from softswitch.config import load_config
        from softswitch.errors import ConfigError

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            for issue in exc.errors:
                print(issue, file=sys.stderr)
            return 2
        flows, region_of = config.flows, config.dialplan.region_of
        wrap_ups = {q.name: float(q.wrap_up) for q in config.queues}
    try:
        result = trace_from_cdr(
            Path(args.data) / DB_NAME, start, end, flows=flows, region_of=region_of,
            queue_wrap_up=wrap_ups, default_wrap=args.wrap, think_s=args.think,
            answered_margin=args.answered_patience,
        )  # fmt: skip
    except CdrTraceError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    write_trace(args.out, result.trace)
    skipped = f", {result.skipped} left out (caller or called not digits)" if result.skipped else ""
    print(f"{args.out}: {len(result.trace.calls)} calls{skipped}")
    return 0


def summary(trace: Trace) -> list[str]:
    """What `check` prints: calls, span, the busiest hour (hours counted from the trace's
    start), mean talk, wrap-up and patience, the share of callers who press keys."""
    calls = trace.calls
    if not calls:
        return ["calls: 0"]
    span = calls[-1].offset_s
    per_hour: dict[int, int] = {}
    for c in calls:
        per_hour[int(c.offset_s // 3600)] = per_hour.get(int(c.offset_s // 3600), 0) + 1
    hour, busiest = max(per_hour.items(), key=lambda item: (item[1], -item[0]))
    patient = [c.patience_s for c in calls if c.patience_s is not None]
    n = len(calls)
    lines = [
        f"calls: {n}",
        f"span: {span / 3600:.2f} h ({format_seconds(span)} s)",
        f"busiest hour: {busiest} calls (hour {hour + 1} of the trace, from {hour * 3600} s)",
        f"mean talk: {sum(c.talk_s for c in calls) / n:.1f} s",
        f"mean wrap-up: {sum(c.wrap_s for c in calls) / n:.1f} s",
        f"with keys: {sum(1 for c in calls if c.keys) / n:.1%}",
    ]
    if patient:
        lines.append(
            f"patience: {len(patient) / n:.1%} of callers, mean {sum(patient) / len(patient):.1f} s"
        )
    else:
        lines.append("patience: none (every caller waits forever)")
    lines += [
        f"{k}: {v}" for k, v in trace.metadata.items() if k in ("generator", "seed", "profile")
    ]
    return lines


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"{option} {text!r}: expected HOST:PORT", 2)
    return host.strip("[]"), int(port)


def _run_options(args: argparse.Namespace) -> RunOptions:
    if not args.time_scale > 0:
        raise CliError("--time-scale: expected a number > 0", 2)
    if not args.max_seconds > 0:
        raise CliError("--max-seconds: expected seconds > 0", 2)
    if args.answer_delay < 0 or args.wrap_up < 0:
        raise CliError("--answer-delay and --wrap-up: expected seconds >= 0", 2)
    if args.node_pid is not None and args.node_pid < 1:
        raise CliError("--node-pid: expected a process id", 2)
    if args.agents is not None and args.agents < 0:
        raise CliError("--agents: expected a number >= 0", 2)
    if args.generators < 1:
        raise CliError("--generators: expected a number >= 1", 2)
    if args.engine != "sipp" and (
        args.generators != 1 or args.sipp_dir or args.sipp_rtp != "silence"
    ):
        raise CliError("--generators, --sipp-dir and --sipp-rtp need --engine sipp", 2)
    low, _, high = args.rtp_ports.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        raise CliError(f"--rtp-ports {args.rtp_ports!r}: expected MIN-MAX within 1024-65535", 2)
    accounts: list[AgentAccount] = []
    source = args.register_agents or args.agent_password_file
    if source is None:
        if args.agents:
            raise CliError("--agents N needs --register-agents or --agent-password-file", 2)
    else:
        try:
            accounts = load_agents(Path(source), yaml_file=args.register_agents is not None)
        except AgentSetupError as exc:
            raise CliError(str(exc), 1) from None
        if args.agents is not None:
            if args.agents > len(accounts):
                raise CliError(f"--agents {args.agents}: {source} has {len(accounts)} agents", 1)
            accounts = accounts[: args.agents]
    return RunOptions(
        target=_host_port(args.target, "--target"),
        time_scale=args.time_scale,
        agents=tuple(accounts),
        answer_delay_s=args.answer_delay,
        wrap_up_s=args.wrap_up,
        max_seconds=args.max_seconds,
        local_ip=args.local_ip,
        rtp_ports=(int(low), int(high)),
        progress=not args.no_progress,
        node_pid=args.node_pid,
        engine=args.engine,
        generators=args.generators,
        sipp_binary=args.sipp_binary,
        sipp_dir=args.sipp_dir,
        sipp_rtp=args.sipp_rtp == "silence",
    )


def _check_plots(args: argparse.Namespace) -> None:
    """Refuse --plots/--html at once (exit 2), before a run, when matplotlib is missing or
    the files could not be written: a long run must not end with nowhere to draw it."""
    if not (args.plots or args.html):
        return
    try:
        require_matplotlib()
    except PlotsUnavailableError as exc:
        raise CliError(str(exc), 2) from None
    if args.html and not Path(args.html).resolve().parent.is_dir():
        raise CliError(f"--html {args.html}: its directory does not exist", 2)
    if args.plots:
        try:
            Path(args.plots).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"--plots {args.plots}: {exc.strerror or exc}", 2) from None


def _draw(args: argparse.Namespace, report: Report, calls: list[CallResult]) -> None:
    """--plots DIR and --html FILE, each path written named on stdout."""
    if not (args.plots or args.html):
        return
    made = plots(report, calls)
    if args.plots:
        for path in write_plots(Path(args.plots), made):
            print(f"plot: {path}")
    if args.html:
        Path(args.html).write_text(render(report, made), encoding="utf-8")
        print(f"page: {args.html}")


def _report(args: argparse.Namespace) -> int:
    _check_plots(args)
    path = Path(args.json_report)
    try:
        report, calls = read_report_json(path.read_bytes(), str(path))
    except ReportFileError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    for line in format_report(report):
        print(line)
    _draw(args, report, calls)
    return 0


def _run(args: argparse.Namespace) -> int:
    _check_plots(args)
    options = _run_options(args)
    if args.limit is not None and args.limit < 0:
        raise CliError("--limit: expected a number >= 0", 2)
    trace = read_trace(args.trace)
    if args.limit is not None:
        trace = Trace(trace.calls[: args.limit], trace.metadata)
    problems: list[str] = []
    try:
        if options.engine == "sipp":
            from loadtest.sipp_run import run_sipp_trace

            report, calls, problems = run_sipp_trace(trace, args.trace, options)
        else:
            report, calls = run_trace(trace, args.trace, options)
    except RunError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    for line in format_report(report):
        print(line)
    if args.json:
        write_json(args.json, report, calls)
    _draw(args, report, calls)
    for problem in problems:  # after the report of what was measured
        print(f"hotline: {problem}", file=sys.stderr)
    if report.interrupted:
        return 130
    return 1 if problems else 0


def loadtest_command(args: argparse.Namespace) -> int:
    """Run a `hotline loadtest` action; returns the exit status."""
    try:
        if args.action == "run":
            return _run(args)
        if args.action == "report":
            return _report(args)
        if args.action == "generate":
            trace = gen.generate(_generator_spec(args))
            write_trace(args.out, trace)
            print(f"{args.out}: {len(trace.calls)} calls")
            return 0
        if args.action == "from-cdr":
            return _from_cdr(args)
        for line in summary(read_trace(args.trace)):
            print(line)
        return 0
    except gen.GeneratorError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return exc.status
    except TraceError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
