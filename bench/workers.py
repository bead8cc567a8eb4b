"""Prototype measurement for issue 12's moonshot (2M BHCA on this two-core machine, load
generator included): how far N hotline processes that share nothing carry the bhca load.

The design proposed in docs/performance.md is a front that steers each Call-ID to one of N
worker processes, each with its own CDR file, and one process that owns the ACD state. This
bench measures that design's *upper bound*, without building it: N independent nodes, each
with its own port, data directory and its own share of the agents, each offered 1/N of the
step's calls by its own SIPp caller; one SIPp agent UAS answers for all of them. There is no
front and no shared ACD here, so what a real worker split carries is at most this; if even
this cannot carry a rate on two cores with SIPp beside it, the split alone cannot reach it
and the per-call cost has to fall first.

    python bench/workers.py --nodes 1,2,2f --profile million --agents 1200 \
        --steps 300:30,400:30,500:30,560:30

`2f` adds the front of that design as a prototype (bench/front.py: a stateless Python proxy
steering each new request by Call-ID, whose Via brings the responses back): one SIPp caller
offers the whole step to it. SIPp sends every request of its calls (INVITE, ACK, BYE) to
the front's address, so the front carries all of the carrier side's messages; the agent side
goes from each worker to the agent UAS directly. The counts it prints at the end give its CPU
per message.

With --nodes 1 the node is pinned to CPU 0 and SIPp to CPU 1 (bench/bhca.py's shape); with
more nodes nothing is pinned: the nodes and every SIPp share both cores, as they would in
production. A step is carried when no call failed and every node's p95 setup is within
500 ms (the worst node's p95 is the step's); CPU is the nodes' and SIPp's CPU seconds over
the step, as a share of the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bhca  # noqa: E402  (bench/ is not a package)


class WorkerStep(msgspec.Struct, frozen=True):
    nodes: int
    front: bool  # one SIPp caller to bench/front.py, which steers by Call-ID
    step: int
    target_cps: float
    attempted: int
    completed: int
    failed: int
    achieved_cps: float
    setup_p50_ms: float | None  # the worst node's
    setup_p95_ms: float | None  # the worst node's
    node_cpu_share: tuple[float, ...]  # per node, of one core
    sipp_cpu_share: float  # every SIPp together, of one core
    machine_cpu_share: float  # nodes + SIPp (+ front), of all cores
    front_cpu_share: float | None  # of one core
    udp_drops: int | None
    rss_mb: float | None  # all nodes

    @property
    def carried(self) -> bool:
        return (
            self.failed == 0
            and self.setup_p95_ms is not None
            and self.setup_p95_ms <= bhca.MAX_P95_SETUP_MS
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_nodes(
    args: argparse.Namespace, profile: bhca.Profile, nodes: int, front: bool
) -> list[WorkerStep]:
    """Start `nodes` hotline nodes and one agent UAS; offer each step split evenly, or
    (`front`) all of it from one SIPp to bench/front.py in front of the nodes."""
    share = msgspec.structs.replace(
        profile,
        steps=tuple(msgspec.structs.replace(s, cps=s.cps / nodes) for s in profile.steps),
    )
    node_args = argparse.Namespace(**vars(args))
    node_args.agents = max(1, args.agents // nodes)
    if nodes > 1:
        node_args.pin = "no"
    label = f"{nodes}{'f' if front else ''}"
    if args.workdir:
        root = Path(args.workdir) / f"workers-{label}"
    else:
        root = Path(tempfile.mkdtemp(prefix=f"workers-{label}-"))
    benches = []
    for index in range(nodes):
        per = argparse.Namespace(**vars(node_args))
        per.workdir = str(root / f"node{index + 1}")
        benches.append(bhca.Bench(per, share))
    first = benches[0]
    results: list[WorkerStep] = []
    steerer: tuple[bhca.Bench, subprocess.Popen[bytes], tuple[str, int]] | None = None
    try:
        uas_dir = root / "uas"
        uas_dir.mkdir(parents=True, exist_ok=True)
        uas, uas_port = first.start_uas(uas_dir)
        started = []
        for bench in benches:
            process, address, _agents = bench.start_hotline(bench.work, uas_port, bhca.REPO_ROOT)
            started.append((process, address))
        if front:
            steerer = start_front(args, profile, root, [a for _p, a in started])
        for index, step in enumerate(profile.steps):
            first.check_deadline()
            outcome: list[bhca.StepResult | BaseException | None] = [None] * nodes
            cpu_before = [bhca.cpu_seconds(p.pid) for p, _a in started]
            drops_before = [bhca.receive_drops(p.pid) for p, _a in started]
            sipp_before = _children_cpu() + bhca.cpu_seconds(uas.pid)
            began = time.monotonic()

            def one(
                i: int,
                step_index: int = index,
                outcome: list[bhca.StepResult | BaseException | None] = outcome,
            ) -> None:
                process, address = started[i]
                try:
                    outcome[i] = benches[i].run_step(
                        "hotline", step_index, 1, process.pid, address, benches[i].work
                    )
                except BaseException as error:  # reported below, after every thread ends
                    outcome[i] = error

            def steered(step_index: int = index, outcome: list = outcome) -> None:  # type: ignore[type-arg]
                assert steerer is not None
                bench, process, address = steerer
                try:
                    outcome[0] = bench.run_step(
                        "front", step_index, 1, process.pid, address, bench.work
                    )
                except BaseException as error:
                    outcome[0] = error

            if steerer is None:
                threads = [threading.Thread(target=one, args=(i,)) for i in range(nodes)]
            else:
                threads = [threading.Thread(target=steered)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = max(time.monotonic() - began, 1e-6)
            for item in outcome:
                if isinstance(item, BaseException):
                    raise item
            steps = [item for item in outcome if isinstance(item, bhca.StepResult)]
            node_cpu = [
                (bhca.cpu_seconds(p.pid) - before) / elapsed
                for (p, _a), before in zip(started, cpu_before, strict=True)
            ]
            sipp_cpu = (_children_cpu() + bhca.cpu_seconds(uas.pid) - sipp_before) / elapsed
            front_cpu = steps[0].cpu_s / elapsed if steerer is not None else None
            p50 = [s.setup_p50_ms for s in steps]
            p95 = [s.setup_p95_ms for s in steps]
            drops = [
                None if b is None or a is None else a - b
                for b, a in zip(
                    drops_before, [bhca.receive_drops(p.pid) for p, _a in started], strict=True
                )
            ]
            if steerer is not None:
                drops.append(steps[0].udp_drops)  # the front's own socket
            rss = [s.rss_mb for s in steps]
            result = WorkerStep(
                nodes=nodes,
                front=front,
                step=index + 1,
                target_cps=step.cps,
                attempted=sum(s.attempted for s in steps),
                completed=sum(s.completed for s in steps),
                failed=sum(s.failed for s in steps),
                achieved_cps=round(sum(s.achieved_cps for s in steps), 1),
                setup_p50_ms=None if None in p50 else max(v for v in p50 if v is not None),
                setup_p95_ms=None if None in p95 else max(v for v in p95 if v is not None),
                node_cpu_share=tuple(round(c, 3) for c in node_cpu),
                sipp_cpu_share=round(sipp_cpu, 3),
                machine_cpu_share=round(
                    (sum(node_cpu) + sipp_cpu + (front_cpu or 0.0)) / (os.cpu_count() or 1), 3
                ),
                front_cpu_share=None if front_cpu is None else round(front_cpu, 3),
                udp_drops=None if None in drops else sum(d for d in drops if d is not None),
                rss_mb=None
                if None in rss or steerer is not None
                else round(sum(r for r in rss if r is not None), 1),
            )
            results.append(result)
            first.log(
                f"  {label_of(nodes, front)} step {index + 1}: {step.cps:g} cps, "
                f"{result.completed}/{result.attempted} completed, "
                f"p95 {bhca.fmt_ms(result.setup_p95_ms)} ms, nodes "
                + "/".join(f"{c:.0%}" for c in result.node_cpu_share)
                + f" of a core, SIPp {result.sipp_cpu_share:.0%}, machine "
                f"{result.machine_cpu_share:.0%}, {result.udp_drops} UDP drops"
            )
            time.sleep(profile.settle_s)
    finally:
        if steerer is not None:
            bench, process, _address = steerer
            bench.processes.close()  # SIGTERM: the front prints its counts and exits
            counts = (bench.work / "front.log").read_text(errors="replace").strip()
            first.log(f"  {counts or 'front: no counts (it did not exit cleanly)'}")
        for bench in benches:
            bench.processes.close()
    if not args.workdir and results and not any(r.failed for r in results):
        shutil.rmtree(root, ignore_errors=True)  # kept, with every log, when a call failed
    else:
        first.log(f"  logs of the {label_of(nodes, front)} run: {root}")
    return results


def label_of(nodes: int, front: bool) -> str:
    return f"{nodes} node(s)" + (" behind the front" if front else "")


def start_front(
    args: argparse.Namespace, profile: bhca.Profile, root: Path, workers: list[tuple[str, int]]
) -> tuple[bhca.Bench, subprocess.Popen[bytes], tuple[str, int]]:
    """bench/front.py on a port of its own (pinned as the nodes are: not at all), and a
    bhca.Bench whose steps offer the whole profile to it from one SIPp."""
    front_args = argparse.Namespace(**vars(args))
    front_args.pin = "no"
    front_args.workdir = str(root / "front")
    bench = bhca.Bench(front_args, profile)
    port = bhca.free_udp_port()
    command = [
        sys.executable, str(Path(__file__).with_name("front.py")),
        "--listen", f"{bhca.LOOPBACK}:{port}",
        "--max-seconds", str(args.max_seconds),
    ]  # fmt: skip
    for host, worker_port in workers:
        command += ["--worker", f"{host}:{worker_port}"]
    process = bench.processes.start(
        "front", command, log_path=bench.work / "front.log", cwd=bench.work
    )
    time.sleep(0.5)
    if process.poll() is not None:
        raise bhca.BenchError(f"the front exited at once, see {bench.work / 'front.log'}")
    return bench, process, (bhca.LOOPBACK, port)


def render(results: Sequence[WorkerStep]) -> str:
    header = (
        f"{'nodes':>5} {'step':>4} {'cps':>6} {'done/offered':>13} {'fail':>5} "
        f"{'p50':>6} {'p95':>6} {'node CPU (core)':>16} {'SIPp':>5} {'front':>5} "
        f"{'machine':>7} {'drops':>5} carried"
    )
    lines = [header]
    for r in results:
        tag = f"{r.nodes}{'f' if r.front else ''}"
        lines.append(
            f"{tag:>5} {r.step:>4} {r.target_cps:>6g} "
            f"{f'{r.completed}/{r.attempted}':>13} {r.failed:>5} "
            f"{bhca.fmt_ms(r.setup_p50_ms):>6} {bhca.fmt_ms(r.setup_p95_ms):>6} "
            f"{'/'.join(f'{c:.0%}' for c in r.node_cpu_share):>16} {r.sipp_cpu_share:>5.0%} "
            f"{'-' if r.front_cpu_share is None else f'{r.front_cpu_share:.0%}':>5} "
            f"{r.machine_cpu_share:>7.0%} {r.udp_drops if r.udp_drops is not None else '?':>5} "
            f"{'yes' if r.carried else 'no'}"
        )
    for nodes, front in sorted({(r.nodes, r.front) for r in results}):
        carried = [r for r in results if (r.nodes, r.front) == (nodes, front) and r.carried]
        best = max(carried, key=lambda r: r.target_cps) if carried else None
        lines.append(
            f"rated, {label_of(nodes, front)}: "
            + (
                f"{best.target_cps:g} cps = {round(best.target_cps * 3600):,} BHCA"
                if best
                else "none"
            )
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--nodes",
        default="1,2,2f",
        help="comma list of node counts; N f: N nodes behind bench/front.py (1,2,2f)",
    )
    ours, rest = parser.parse_known_args(argv)
    args = bhca.parse_args(rest)
    try:
        counts = [
            (int(n.strip().rstrip("f")), n.strip().endswith("f"))
            for n in ours.nodes.split(",")
            if n.strip()
        ]
    except ValueError:
        counts = []
    if not counts or min(n for n, _f in counts) < 1:
        print("workers: --nodes takes positive counts, e.g. 1,2,2f", file=sys.stderr)
        return 2
    profile = bhca.load_profile(args.profile)
    if args.steps:
        profile = msgspec.structs.replace(profile, steps=bhca.parse_steps(args.steps))
    args.agents = args.agents or bhca.agents_needed(profile)
    results: list[WorkerStep] = []
    try:
        with bhca.interrupt_on_sigterm():
            for nodes, front in counts:
                results += run_nodes(args, profile, nodes, front)
    except bhca.BenchError as error:
        print(f"workers: {error}", file=sys.stderr)
        print(render(results))
        return 1
    except KeyboardInterrupt:
        print("workers: interrupted; every process stopped", file=sys.stderr)
        return 130
    print(
        f"profile {profile.name} (seed {profile.seed}), {args.agents} agents split over the "
        "nodes; p50/p95: the worst node's; CPU: share of one core (nodes, SIPp) and of the "
        "machine"
    )
    print(render(results))
    if args.json:
        Path(args.json).write_bytes(
            msgspec.json.format(msgspec.json.encode(results), indent=2) + b"\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
