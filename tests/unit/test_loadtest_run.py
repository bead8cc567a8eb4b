"""`hotline loadtest run`, the pure parts: report maths, the caller's state machine (virtual
time), the correlation of agents' INVITEs with callers, agent files and client digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import report as rep
from loadtest.agents import (
    AgentSetupError,
    Correlator,
    authorization,
    load_agents,
    numbers_match,
    pick_challenge,
)
from loadtest.caller import TRANSITIONS, Caller, Event, State
from loadtest.cli import loadtest_command
from loadtest.report import CallResult, Outcome
from loadtest.sample import (
    CLOCK_TICKS,
    NodeSampler,
    SampleError,
    parse_rss,
    parse_stat,
    parse_udp_drops,
    udp_drops,
)
from loadtest.sip_udp import granted_expires
from loadtest.trace import KeyPress, Trace, TraceCall
from softswitch.cli import _parser
from softswitch.sip.auth import DigestServer, ha1
from softswitch.sip.message import Headers, Response


def call(**kw: object) -> TraceCall:
    fields: dict = {"call_id": "c1", "offset_s": 10.0, "caller": "01012345678", "called": "12345"}
    fields.update(kw)
    return TraceCall(**fields)


def kinds(commands: list) -> list[str]:
    return [c.kind for c in commands]


# --- report maths -----------------------------------------------------------------------------
def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))
    p = rep.percentiles([float(v) for v in reversed(values)])
    assert (p.count, p.p50, p.p95, p.p99, p.max, p.mean) == (100, 50, 95, 99, 100, 50.5)
    assert rep.nearest_rank([7.0], 99) == 7.0
    assert rep.nearest_rank([], 50) is None
    assert rep.nearest_rank([1.0, 2.0, 3.0], 50) == 2.0
    assert rep.nearest_rank([1.0, 2.0, 3.0, 4.0], 95) == 4.0


def test_bhca_counts_the_busiest_trace_hour_in_run_time() -> None:
    # time scale 0.01: one trace hour is 36 run seconds
    attempts = [0.0, 1.0, 2.0, 40.0, 41.0, 42.0, 43.0, 80.0]
    assert rep.bhca(attempts, 0.01) == (4.0, False)
    assert rep.bhca(attempts, 1.0) == (8 * 3600 / 80.0, True)  # shorter than an hour: a rate


def test_bhca_of_a_short_run_is_its_rate_per_trace_hour() -> None:
    # 10 attempts over 9 run s at scale 0.1 = 90 trace s → 400 per trace hour
    value, extrapolated = rep.bhca([float(i) for i in range(10)], 0.1)
    assert extrapolated and value == pytest.approx(10 * 360 / 9)
    assert rep.bhca([5.0], 1.0) == (None, True)
    assert rep.bhca([], 1.0) == (None, False)


def waited(outcome: Outcome, wait: float, scale: float = 1.0) -> CallResult:
    r = CallResult(call_id="x", offset_s=0.0, invite_at=0.0, waiting_at=1.0, outcome=outcome)
    if outcome is Outcome.ANSWERED:
        r.agent_answer_at = 1.0 + wait * scale
        r.ended_at = r.agent_answer_at + 5
    else:
        r.ended_at = 1.0 + wait * scale
    return r


def test_kpis_follow_rpt3_with_thresholds_in_trace_seconds() -> None:
    scale = 0.1
    calls = [
        waited(Outcome.ANSWERED, 5, scale),  # in time
        waited(Outcome.ANSWERED, 15, scale),  # in time (at the limit)
        waited(Outcome.ANSWERED, 40, scale),  # late
        waited(Outcome.ABANDONED, 10, scale),  # short: out of the answer rate
        waited(Outcome.ABANDONED, 30, scale),  # counted
        CallResult(call_id="ivr", offset_s=0, invite_at=0, outcome=Outcome.ABANDONED, ended_at=2),
    ]
    k = rep.kpis(calls, scale)
    assert (k.queued, k.answered, k.answered_in_time, k.abandoned, k.abandoned_short) == (
        5, 3, 2, 2, 1,
    )  # fmt: skip
    assert k.service_level == pytest.approx(2 / 5)
    assert k.human_answer_rate == pytest.approx(3 / 4)
    assert k.mean_wait_s == pytest.approx((5 + 15 + 40 + 10 + 30) / 5)


def test_report_counts_outcomes_failure_rate_and_latencies() -> None:
    ok = waited(Outcome.ANSWERED, 3)
    ok.first_response_at = 0.004
    ok.node_answer_at, ok.first_rtp_at = 0.5, 0.52
    failed = CallResult(
        call_id="f", offset_s=1, invite_at=1.0, outcome=Outcome.FAILED, reason="503 busy"
    )
    never = CallResult(call_id="n", offset_s=99)
    trace = Trace((call(),), {})
    r = rep.build_report(
        [ok, failed, never], trace=trace, trace_name="t.csv", target="127.0.0.1:5060",
        time_scale=1.0, agents=2, run_seconds=10.0,
    )  # fmt: skip
    assert (r.offered, r.attempted, r.answered, r.failed) == (3, 2, 1, 1)
    assert r.failure_rate == 0.5 and r.failures == {"503 busy": 1}
    assert r.setup_ms.p50 == pytest.approx(4.0)
    assert r.ivr_response_ms.p50 == pytest.approx(20.0)
    assert r.queue_wait_s.p50 == pytest.approx(3.0)
    assert not r.staffing.applicable
    text = "\n".join(rep.format_report(r))
    assert "answered 1" in text and "503 busy" in text and "not printed" in text
    assert b'"answered": 1' in rep.report_json(r)


def generated(patience: str) -> Trace:
    meta = {
        "generator": "hotline loadtest generate", "profile": "flat", "bhca": "360",
        "talk": "exp:30", "wrap": "fixed:0", "patience": patience,
    }  # fmt: skip
    return Trace((call(),), meta)


def test_staffing_model_is_erlang_c_or_a_for_flat_poisson_traces() -> None:
    k = rep.kpis([waited(Outcome.ANSWERED, 2)], 1.0)
    c = rep.staffing(generated("none"), 5, 0.0, k)
    assert c.applicable and c.model is not None and c.verdict is not None
    assert c.model.traffic_erlangs == pytest.approx(3.0) and "Erlang C" in c.why
    a = rep.staffing(generated("60"), 5, 10.0, k)
    assert a.applicable and "Erlang A" in a.why
    assert a.model is not None and a.model.handle_time_s == 40.0
    day = Trace((call(),), {**generated("none").metadata, "profile": "hotline-day"})
    assert not rep.staffing(day, 5, 0, k).applicable
    fixed = Trace((call(),), {**generated("none").metadata, "talk": "fixed:30"})
    assert not rep.staffing(fixed, 5, 0, k).applicable
    assert not rep.staffing(generated("none"), 5, 0, k, queues=2).applicable


def test_staffing_model_counts_the_agents_ring_as_busy_time_and_as_wait() -> None:
    k = rep.kpis([waited(Outcome.ANSWERED, 4.0)], 1.0)
    s = rep.staffing(generated("none"), 5, 0.0, k, answer_delay_s=1.0)
    assert s.model is not None and s.verdict is not None
    assert s.model.handle_time_s == 31.0 and s.model.target_s == 14.0
    assert s.verdict.measured_mean_wait_s == pytest.approx(3.0)  # the wait less the ring


def test_staffing_model_takes_the_replayed_sample_rate_talk_and_patience() -> None:
    k = rep.kpis([waited(Outcome.ANSWERED, 4.0)], 1.0)
    sample = [
        call(call_id=f"c{i}", offset_s=i * 20.0, talk_s=10.0 + i, patience_s=40.0) for i in range(5)
    ]  # 4 gaps of 20 s: 180 calls an hour; talk 12 s on average
    s = rep.staffing(generated("60"), 5, 0.0, k, replayed=sample)
    assert s.model is not None
    assert s.model.arrivals_per_s * 3600 == pytest.approx(180.0)
    assert s.model.handle_time_s == pytest.approx(12.0)
    assert isinstance(s.model, rep.ErlangA) and s.model.patience_s == pytest.approx(40.0)


# --- the caller -------------------------------------------------------------------------------
def test_ivr_caller_presses_keys_waits_is_answered_talks_and_hangs_up() -> None:
    c = Caller(call(keys=(KeyPress("1", 2.0), KeyPress("3", 1.0)), patience_s=30, talk_s=100), 0.1)
    assert c.start_at == pytest.approx(1.0)
    assert kinds(c.handle(Event.START, 1.0)) == ["invite"]
    c.handle(Event.PROVISIONAL, 1.01)
    assert c.result.first_response_at == 1.01
    assert kinds(c.handle(Event.ANSWERED, 1.02)) == ["ack", "media"]
    assert c.state is State.IVR and c.result.waiting_at is None
    assert c.next_timer() == pytest.approx(1.22)  # 2 trace s after the answer
    assert [(x.kind, x.key) for x in c.handle_timer(1.22)] == [("key", "1")]
    assert c.handle_timer(1.3) == []  # the next key is due at 1.32
    assert [x.key for x in c.handle_timer(1.32)] == ["3"]
    assert c.state is State.WAITING and c.result.waiting_at == pytest.approx(1.32)
    assert c.next_timer() == pytest.approx(4.32)  # patience 30 trace s
    assert c.waiting_for_agent
    c.handle(Event.AGENT_ANSWERED, 2.0)
    assert c.state is State.TALKING and not c.waiting_for_agent
    assert c.next_timer() == pytest.approx(12.0)  # talk 100 trace s
    assert kinds(c.handle_timer(12.0)) == ["bye"]
    assert c.state is State.ENDING
    assert kinds(c.handle(Event.BYE_DONE, 12.01)) == ["done"]
    assert c.result.outcome is Outcome.ANSWERED and c.result.keys_sent == 2


def test_unanswered_caller_cancels_when_patience_runs_out() -> None:
    c = Caller(call(patience_s=5.0, keys=(KeyPress("1", 1.0),)), 1.0)
    c.handle(Event.START, 10.0)
    c.handle(Event.PROVISIONAL, 10.1)  # a queue route: ringing, waiting from here
    assert c.result.waiting_at == 10.1 and c.next_timer() == pytest.approx(15.1)
    assert kinds(c.handle_timer(15.1)) == ["cancel"]
    assert c.state is State.CANCELLING
    assert kinds(c.handle(Event.REJECTED, 15.2, 487, "Request Terminated")) == ["done"]
    assert c.result.outcome is Outcome.ABANDONED and c.result.keys_skipped == 1


def test_answered_by_ivr_caller_hangs_up_with_bye_when_patience_runs_out() -> None:
    c = Caller(call(patience_s=5.0), 1.0)
    c.handle(Event.START, 0.0)
    c.handle(Event.ANSWERED, 0.1)
    assert c.state is State.WAITING and c.result.waiting_at == 0.1
    assert kinds(c.handle_timer(5.1)) == ["bye"]
    c.handle(Event.BYE_DONE, 5.2)
    assert c.result.outcome is Outcome.ABANDONED


def test_a_200_crossing_the_cancel_is_acked_then_ended_with_bye() -> None:
    c = Caller(call(patience_s=1.0), 1.0)
    c.handle(Event.START, 0.0)
    c.handle(Event.PROVISIONAL, 0.0)
    c.handle_timer(1.0)
    assert kinds(c.handle(Event.ANSWERED, 1.01)) == ["ack", "bye"]
    c.handle(Event.BYE_DONE, 1.02)
    assert c.result.outcome is Outcome.ABANDONED


def test_queue_route_caller_talks_from_the_agents_answer() -> None:
    c = Caller(call(patience_s=None, talk_s=10, keys=(KeyPress("1", 1.0),)), 1.0)
    c.handle(Event.START, 0.0)
    c.handle(Event.PROVISIONAL, 0.01)
    assert c.next_timer() is None  # waits forever
    c.handle(Event.AGENT_ANSWERED, 3.0)  # the agent's 200 goes out before ours arrives
    assert c.state is State.EARLY
    c.handle(Event.ANSWERED, 3.01)
    assert c.state is State.TALKING and c.next_timer() == pytest.approx(13.0)
    assert c.result.keys_skipped == 1 and c.result.keys_sent == 0


def test_node_rejections_and_timeouts_are_released_or_failed() -> None:
    for status, outcome in ((404, Outcome.RELEASED), (480, Outcome.RELEASED),
                            (503, Outcome.FAILED), (408, Outcome.FAILED)):  # fmt: skip
        c = Caller(call(), 1.0)
        c.handle(Event.START, 0.0)
        c.handle(Event.REJECTED, 0.1, status, "x")
        assert c.result.outcome is outcome and c.result.status == status
    c = Caller(call(), 1.0)
    c.handle(Event.START, 0.0)
    c.handle(Event.TIMEOUT, 32.0)
    assert c.result.outcome is Outcome.FAILED and c.result.reason == "no final response"


def test_bye_from_the_node_ends_the_call_as_answered_or_released() -> None:
    talking = Caller(call(talk_s=60), 1.0)
    talking.handle(Event.START, 0)
    talking.handle(Event.ANSWERED, 0.1)
    talking.handle(Event.AGENT_ANSWERED, 1.0)
    assert kinds(talking.handle(Event.REMOTE_BYE, 5.0)) == ["done"]
    assert talking.result.outcome is Outcome.ANSWERED
    assert talking.result.premature  # 55 s of talk left: the node released it first
    waiting = Caller(call(), 1.0)
    waiting.handle(Event.START, 0)
    waiting.handle(Event.ANSWERED, 0.1)
    waiting.handle(Event.REMOTE_BYE, 300.0)
    assert waiting.result.outcome is Outcome.RELEASED and not waiting.result.premature
    done = Caller(call(talk_s=2), 1.0)  # the caller's own BYE: not premature
    done.handle(Event.START, 0)
    done.handle(Event.ANSWERED, 0.1)
    done.handle(Event.AGENT_ANSWERED, 1.0)
    assert kinds(done.handle(Event.TALK_OVER, 3.0)) == ["bye"]
    done.handle(Event.BYE_DONE, 3.1)
    assert done.result.outcome is Outcome.ANSWERED and not done.result.premature


def test_cut_ends_whatever_is_up_and_leaves_unstarted_calls_unattempted() -> None:
    new = Caller(call(), 1.0)
    assert new.handle(Event.CUT, 0) == [] and new.result.outcome is None
    ringing = Caller(call(), 1.0)
    ringing.handle(Event.START, 0)
    ringing.handle(Event.PROVISIONAL, 0)
    assert kinds(ringing.handle(Event.CUT, 1)) == ["cancel"]
    up = Caller(call(), 1.0)
    up.handle(Event.START, 0)
    up.handle(Event.ANSWERED, 0)
    assert kinds(up.handle(Event.CUT, 1)) == ["bye"]
    up.handle(Event.BYE_DONE, 1.1)
    assert up.result.outcome is Outcome.CUT
    talking = Caller(call(talk_s=60), 1.0)
    talking.handle(Event.START, 0)
    talking.handle(Event.ANSWERED, 0)
    talking.handle(Event.AGENT_ANSWERED, 1)
    assert kinds(talking.handle(Event.CUT, 2)) == ["bye"]
    talking.handle(Event.BYE_DONE, 2.1)
    assert talking.result.outcome is Outcome.ANSWERED and talking.result.cut_short


def test_events_the_table_does_not_allow_are_ignored_and_counted() -> None:
    c = Caller(call(), 1.0)
    assert c.handle(Event.TALK_OVER, 0) == [] and c.state is State.NEW and c.ignored == 1
    for state in State:
        for event in Event:
            new = TRANSITIONS.get((state, event))
            assert new is None or isinstance(new, State)
    assert not any(state is State.ENDED for state, _event in TRANSITIONS)


# --- correlation ------------------------------------------------------------------------------
class Party:
    def __init__(self, waiting: bool = True) -> None:
        self.waiting_for_agent = waiting


def test_numbers_match_exactly_or_after_the_trunks_prefix_rules() -> None:
    assert numbers_match("+8613800138000", "13800138000")
    assert numbers_match("01012345678", "01012345678")
    assert not numbers_match("9001", "19001")  # too short for a suffix match
    assert not numbers_match("13800138000", "13800138001")


def test_correlator_finds_the_waiting_caller_and_counts_ambiguity() -> None:
    corr = Correlator()
    first, second, done, other = Party(), Party(), Party(False), Party()
    corr.add("+8613800138000", "12345", first)
    corr.add("13800138000", "12315", second)
    corr.add("13900000000", "12345", done)
    corr.add("01088888888", "12345", other)
    assert corr.match("13800138000", "12315") is second  # exact number wins
    assert corr.match("8613800138000", None) is first
    assert corr.match("13900000000", None) is None  # not waiting any more
    assert corr.match("01088888888", "12345") is other
    third = Party()
    corr.add("02055555555", "12345", third)
    twin = Party()
    corr.add("02055555555", "12345", twin)
    assert corr.match("02055555555", "12345") is third  # the first of two
    assert corr.counts == {"matched": 3, "ambiguous": 1, "unmatched": 1}


# --- agents -----------------------------------------------------------------------------------
def test_agents_come_from_agents_yaml_or_a_password_file(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "agents.yaml"
    accounts = load_agents(shipped, yaml_file=True)
    assert [a.agent_id for a in accounts][:2] == ["1001", "1002"]
    assert accounts[0].password == "pw1001"
    text = tmp_path / "pw.txt"
    text.write_text("# bench\n2000 secret one\n2001:two\n", encoding="utf-8")
    assert [(a.agent_id, a.password) for a in load_agents(text, yaml_file=False)] == [
        ("2000", "secret one"), ("2001", "two"),
    ]  # fmt: skip
    bad = tmp_path / "bad.txt"
    bad.write_text("lonely\n", encoding="utf-8")
    with pytest.raises(AgentSetupError, match="bad.txt:1"):
        load_agents(bad, yaml_file=False)
    ha1_only = tmp_path / "agents.yaml"
    ha1_only.write_text("agents:\n  - {id: '7', ha1_md5: abc}\n", encoding="utf-8")
    with pytest.raises(AgentSetupError, match="only ha1 for 7"):
        load_agents(ha1_only, yaml_file=True)


def test_client_digest_is_accepted_by_the_nodes_digest_server() -> None:
    server = DigestServer(b"k" * 32, "hotline.local", algorithms=["MD5", "SHA-256"])
    values = server.challenge(100.0)
    challenge = pick_challenge(values)
    assert challenge is not None and challenge.algorithm == "MD5" and challenge.qop == "auth"
    value = authorization(challenge, "1001", "pw1001", "REGISTER", "sip:127.0.0.1:5060")
    stored = {"MD5": ha1("1001", "hotline.local", "pw1001", "MD5")}
    result = server.verify(value, "REGISTER", 101.0, lambda user, algorithm: stored.get(algorithm))
    assert result.ok, result.reason
    assert pick_challenge(['Basic realm="x"']) is None


# --- the command line -------------------------------------------------------------------------
def run_cli(*args: str) -> int:
    return loadtest_command(_parser().parse_args(["loadtest", "run", *args]))


def test_run_refuses_a_wrong_command_line_with_2_and_a_bad_trace_with_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("# hotline-trace 1\ncall_id,offset_s\n", encoding="utf-8")
    target = ["--target", "127.0.0.1:5060"]
    cases = [
        (["--target", "localhost"], 2, "--target 'localhost': expected HOST:PORT"),
        ([*target, "--time-scale", "0"], 2, "--time-scale: expected a number > 0"),
        ([*target, "--agents", "2"], 2, "--agents N needs --register-agents"),
        ([*target, "--rtp-ports", "9-8"], 2, "--rtp-ports '9-8'"),
        ([*target, "--agent-password-file", str(tmp_path / "none")], 1, "none:"),
        (target, 1, "header: missing column caller"),
    ]
    for args, status, message in cases:
        assert run_cli(str(trace), *args) == status, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") <= 8, (args, err)
    shipped = Path(__file__).resolve().parents[2] / "config" / "agents.yaml"
    more = [*target, "--register-agents", str(shipped), "--agents", "99"]
    assert run_cli(str(trace), *more) == 1
    assert "has 8 agents" in capsys.readouterr().err


def test_registrations_are_refreshed_by_the_expiry_the_registrar_granted() -> None:
    contact = Response(200, headers=Headers([("contact", "<sip:1001@127.0.0.1:5>;expires=600")]))
    assert granted_expires(contact, 3600) == 600.0
    header = Response(200, headers=Headers([("expires", "120")]))
    assert granted_expires(header, 3600) == 120.0
    assert granted_expires(Response(200), 3600) == 3600.0
    assert granted_expires(Response(200, headers=Headers([("expires", "1")])), 3600) == 10.0


# --- the node's CPU and memory ----------------------------------------------------------------
def test_node_sampler_reads_cpu_and_memory_from_proc(tmp_path: Path) -> None:
    stat = "4242 (python (node) x) S 1 2 3 4 5 6 7 8 9 10 {u} {s} 0 0 20 0 3 0 99"
    assert parse_stat(stat.format(u=CLOCK_TICKS * 2, s=CLOCK_TICKS)) == pytest.approx(3.0)
    assert parse_rss("Name:\tpython\nVmRSS:\t  51200 kB\n") == pytest.approx(50.0)
    assert parse_rss("Name: x\n") == 0.0
    proc = tmp_path / "4242"
    proc.mkdir()
    sampler = NodeSampler(4242, proc=tmp_path)
    for now, ticks, rss in ((10.0, 100, 1024), (20.0, 100 + 5 * CLOCK_TICKS, 4096)):
        (proc / "stat").write_text(stat.format(u=ticks, s=0), encoding="ascii")
        (proc / "status").write_text(f"VmRSS: {rss} kB\n", encoding="ascii")
        sampler.sample(now)
    usage = sampler.usage(attempted=50)
    assert usage is not None
    assert (usage.cpu_s, usage.cpu_ms_per_call, usage.cpu_share) == pytest.approx((5, 100, 0.5))
    assert usage.rss_mb_max == pytest.approx(4.0) and usage.samples == 2
    with pytest.raises(SampleError, match="--node-pid 7"):
        NodeSampler(7, proc=tmp_path).read()
    assert NodeSampler(7, proc=tmp_path).usage(1) is None


def test_udp_drops_sum_the_drops_column_of_the_process_sockets_only() -> None:
    table = (
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
        "  timeout inode ref pointer drops\n"
        "  101: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 5001 2 0000000000000000 17\n"
        "  102: 0100007F:13C5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 5002 2 0000000000000000 4\n"
        "  103: 0100007F:13C6 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 5003 2 0000000000000000 900\n"
    )
    assert parse_udp_drops(table, {"5001", "5002"}) == 21
    assert parse_udp_drops(table, set()) == 0


def test_udp_drops_counts_datagrams_a_full_receive_buffer_of_this_process_lost() -> None:
    import os
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's minimum
        sink.bind(("127.0.0.1", 0))
        before = udp_drops(os.getpid())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as source:
            for _ in range(200):  # never read: the buffer fills and the rest is dropped
                source.sendto(b"x" * 1000, sink.getsockname())
        assert udp_drops(os.getpid()) - before > 100
    with pytest.raises(SampleError, match="pid 0"):
        udp_drops(0)
